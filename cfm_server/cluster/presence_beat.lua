#!lua flags=allow-oom
-- A node's heartbeat, and the reaper: nodes past their expiry lose their users.
-- KEYS[1] nodes (zset node → expiry, ms of Redis's clock)
-- KEYS[2] lives (hash node → the origin of the life holding it)
-- ARGV[1] node   ARGV[2] lifetime (ms) of this beat, 0 = the node leaves now
-- ARGV[3] key prefix of the presence keys ('cfm:{presence}:')   ARGV[4] changes channel
-- ARGV[5] origin (this life of the node)   ARGV[6] '0': reap no other node this time (the
-- node is back from an outage of its own: the others may have missed their beats in the
-- same outage, and get one registration lifetime to beat again)
-- ARGV[7] the node's beat interval (ms): reaping allows the others as late as this beat
-- itself came (its previous beat was ttl before its registration's end): a Redis (or a
-- machine) that stalled held every node's beats up alike, and its first beat after the
-- stall would otherwise find the others' registrations run out and reap live nodes. A
-- node dead or frozen on its own is reaped as before: the others' beats come on time.
-- Returns {registered, reaped, users gone offline...}: registered 1 = the node was known
-- before this beat, 0 = it was not (reaped: it registers again), 2 = another life of the
-- node id holds it now (it claimed the id after this one's registration expired): its
-- registration is left alone, this life's users are not counted any more; reaped =
-- {node, its users, how many of them went offline, ...} for every other node reaped by
-- this beat (the node's own leave is not a reap).
-- Every key is under the {presence} tag, so the keys built here share KEYS[1]'s slot.
-- A user left with no node is published as 'gone <user>' (not 'off': no node signed
-- them out, so every node tells its own watchers).
local nodes, lives, node, ttl, prefix = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', nodes, node)
local holder = redis.call('HGET', lives, node)
local registered = expiry and 1 or 0
if holder and holder ~= ARGV[5] then
  if expiry and tonumber(expiry) > now then
    registered = 2
  else
    registered = 0
  end
end
local late = 0
if registered == 1 and ttl > 0 then
  late = math.max(0, now - (tonumber(expiry) - ttl) - tonumber(ARGV[7] or 0))
end
if registered ~= 2 then
  redis.call('ZADD', nodes, now + ttl, node)
end
local reaped = {}
local out = {registered, reaped}
local expired
if ARGV[6] == '0' then
  expired = {}  -- only the node's own leave (its registration ends now)
  if ttl == 0 and registered ~= 2 then expired[1] = node end
else
  expired = redis.call('ZRANGEBYSCORE', nodes, '-inf', now - late, 'LIMIT', 0, 100)
end
for _, dead in ipairs(expired) do
  local node_users = prefix .. 'node:' .. dead
  local users = redis.call('HKEYS', node_users)
  local offline = 0
  for _, user in ipairs(users) do
    local user_nodes = prefix .. 'user:' .. user
    redis.call('HDEL', user_nodes, dead)
    if redis.call('EXISTS', user_nodes) == 0 then
      redis.call('PUBLISH', ARGV[4], 'gone ' .. user)
      out[#out + 1] = user
      offline = offline + 1
    end
  end
  if dead ~= node then
    reaped[#reaped + 1] = dead
    reaped[#reaped + 1] = #users
    reaped[#reaped + 1] = offline
  end
  redis.call('DEL', node_users)
  redis.call('ZREM', nodes, dead)
  redis.call('HDEL', lives, dead)
end
return out
