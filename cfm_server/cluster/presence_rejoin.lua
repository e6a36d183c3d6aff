#!lua flags=allow-oom
-- A node (re)registers with all its sessions: at start (its claim of the node id), or
-- after it was reaped.
-- KEYS[1] nodes   KEYS[2] lives (hash node → the origin of the life holding it)
-- ARGV[1] node   ARGV[2] lifetime (ms)   ARGV[3] key prefix   ARGV[4] changes channel
-- ARGV[5] origin (this life of the node)   ARGV[6..] user, sessions, user, sessions, ...
-- Returns {1, users that came online...}, or {0, holder, ms left, expiry} when another
-- life of the node id holds an unexpired registration (a live node with the same id, or
-- a killed one whose registration has not expired yet): nothing is changed then.
local nodes, lives, node, ttl, prefix = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local origin = ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', nodes, node)
local holder = redis.call('HGET', lives, node)
if expiry and tonumber(expiry) > now and holder and holder ~= origin then
  return {0, holder, tonumber(expiry) - now, expiry}
end
local node_users = prefix .. 'node:' .. node
local staying = {}
for i = 6, #ARGV, 2 do staying[ARGV[i]] = true end
-- Whatever a previous life of this node left behind is replaced, not added to; a user
-- it held whom no node holds now is 'gone' (as the reaper says: nobody signed them out).
local held = {}
for _, user in ipairs(redis.call('HKEYS', node_users)) do
  local user_nodes = prefix .. 'user:' .. user
  held[user] = true
  redis.call('HDEL', user_nodes, node)
  if not staying[user] and redis.call('EXISTS', user_nodes) == 0 then
    redis.call('PUBLISH', ARGV[4], 'gone ' .. user)
  end
end
redis.call('DEL', node_users)
redis.call('ZADD', nodes, now + ttl, node)
redis.call('HSET', lives, node, origin)
local came = {1}
for i = 6, #ARGV, 2 do
  local user, sessions = ARGV[i], ARGV[i + 1]
  local user_nodes = prefix .. 'user:' .. user
  local was_online = redis.call('EXISTS', user_nodes) == 1
  redis.call('HSET', node_users, user, sessions)
  redis.call('HSET', user_nodes, node, sessions)
  -- (one the previous life held was online all along)
  if not was_online and not held[user] then
    redis.call('PUBLISH', ARGV[4], 'on ' .. user)
    came[#came + 1] = user
  end
end
return came
