-- Take the lease if it is free, or extend it if we hold it.
-- KEYS[1] lease   ARGV[1] holder's token   ARGV[2] lifetime (ms)
-- Returns 1 if we hold it now, 0 if someone else does.
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
