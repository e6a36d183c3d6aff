#!lua flags=allow-oom
-- Take the lease if it is free, or extend it if we hold it.
-- KEYS[1] lease   ARGV[1] holder's token   ARGV[2] lifetime (ms)
-- Returns 1 if we hold it now; if someone else does, minus the ms their lease has left
-- (so a waiter tries again as it expires, not up to a renewal interval later).
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then
  left = tonumber(ARGV[2])  -- (no expiry: set by hand) a lifetime, as a guess
end
return -left
