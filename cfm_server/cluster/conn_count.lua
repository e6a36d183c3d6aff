-- Open connections per client address, over every node (the per-address cap).
-- KEYS[1] nodes (zset node → expiry)   KEYS[2] lives (hash node → its origin now)
-- KEYS[3] the address's hash (origin → connections it holds)
-- ARGV[1] origin ('<node>.<life>')   ARGV[2] +1 / -1   ARGV[3] the cap
-- +1: counts one unless the address is at its cap; returns 1 (counted) or 0 (full).
-- Counts of a node's previous life, or of a node past its expiry, are dropped here:
-- their connections are gone. -1: returns 1.
local origin, delta = ARGV[1], tonumber(ARGV[2])
if delta < 0 then
  if redis.call('HINCRBY', KEYS[3], origin, -1) <= 0 then
    redis.call('HDEL', KEYS[3], origin)
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
  end
  if alive then
    total = total + n
  else
    redis.call('HDEL', KEYS[3], field)
  end
end
if total >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HINCRBY', KEYS[3], origin, 1)
-- A count nobody took back (Redis lost a -1) goes with the key, a day after its last use.
redis.call('PEXPIRE', KEYS[3], 86400000)
return 1
