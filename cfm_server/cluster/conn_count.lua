#!lua flags=allow-oom
-- Open connections per client address, over every node (the per-address cap).
-- KEYS[1] nodes (zset node → expiry)   KEYS[2] lives (hash node → its origin now)
-- KEYS[3] the address's hash (origin → connections it holds)
-- ARGV[1] origin ('<node>.<life>')   ARGV[2] +1 / -1   ARGV[3] the cap
-- ARGV[4] the address   ARGV[5] key prefix of the presence keys ('cfm:{presence}:')
-- +1: counts one unless the address is at its cap; returns 1 (counted) or 0 (full).
-- -1: returns 1.
--
-- Before it sums, +1 releases the counts of every life that is gone: a node's previous
-- life, a node past its expiry (reaped, or about to be), and a life whose pub/sub
-- connection Redis no longer holds (nobody subscribes its 'life:<origin>' channel): a
-- SIGKILLed node's connections closed with it, so its clients reconnecting elsewhere
-- get in at once rather than after its expiry. A released count is moved, not dropped,
-- to the life's 'released:<origin>' hash (address → connections): a life that was only
-- cut off from Redis for a moment (its connections dropped, its clients still there)
-- gets it back when it is back (conn_restore.lua). Field plus released is always what
-- that life holds, so a count is never taken twice: a -1 takes from the field, or from
-- what was released once the field is empty; a release or a restore moves it whole,
-- inside one script, so two nodes releasing at once move it once.
local origin, delta, address, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[4], ARGV[5]
local day = 86400000
if delta < 0 then
  local n = tonumber(redis.call('HGET', KEYS[3], origin) or '0')
  if n > 1 then
    redis.call('HINCRBY', KEYS[3], origin, -1)
  elseif n == 1 then
    redis.call('HDEL', KEYS[3], origin)
  else
    local released = prefix .. 'released:' .. origin
    if redis.call('HINCRBY', released, address, -1) <= 0 then
      redis.call('HDEL', released, address)
    end
  end
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
local held = redis.call('HGETALL', KEYS[3])
for i = 1, #held, 2 do
  local field, n = held[i], tonumber(held[i + 1])
  local alive = field == origin
  if not alive then
    local node = string.match(field, '^(.*)%.[^.]*$')
    local expiry = node and redis.call('ZSCORE', KEYS[1], node)
    alive = expiry and tonumber(expiry) >= now and redis.call('HGET', KEYS[2], node) == field
      and redis.call('PUBSUB', 'NUMSUB', prefix .. 'life:' .. field)[2] > 0
  end
  if alive then
    total = total + n
  else
    redis.call('HDEL', KEYS[3], field)
    local released = prefix .. 'released:' .. field
    redis.call('HINCRBY', released, address, n)
    -- Kept as long as a count: a life gone for good leaves this behind for a day.
    redis.call('PEXPIRE', released, day)
  end
end
if total >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HINCRBY', KEYS[3], origin, 1)
-- A count nobody took back (Redis lost a -1) goes with the key, a day after its last use.
redis.call('PEXPIRE', KEYS[3], day)
return 1
