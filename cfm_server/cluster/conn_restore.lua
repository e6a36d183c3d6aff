#!lua flags=allow-oom
-- A life of a node is back after its per-address counts were released (conn_count.lua:
-- its pub/sub connection was gone, or its registration expired, while it was only cut
-- off from Redis or paused): every count it holds is moved back from its 'released'
-- hash to the addresses' hashes, whole and at once. Run after each (re)subscription and
-- re-registration of the life; a life with nothing released changes nothing.
-- KEYS[1] the life's released hash ('released:<origin>': address → connections)
-- ARGV[1] origin   ARGV[2] key prefix of the presence keys ('cfm:{presence}:')
-- Returns how many connections were counted again.
local held = redis.call('HGETALL', KEYS[1])
local restored = 0
for i = 1, #held, 2 do
  local n = tonumber(held[i + 1])
  if n > 0 then
    local conns = ARGV[2] .. 'conns:' .. held[i]
    redis.call('HINCRBY', conns, ARGV[1], n)
    redis.call('PEXPIRE', conns, 86400000)
    restored = restored + n
  end
end
redis.call('DEL', KEYS[1])
return restored
