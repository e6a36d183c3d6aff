#!lua flags=allow-oom
-- A session of a user started (ARGV[3] = 1) or ended (ARGV[3] = -1) on a node.
-- KEYS[1] nodes (zset node → expiry)   KEYS[2] node's hash (user → sessions)
-- KEYS[3] user's hash (node → sessions)   KEYS[4] the user's grace mark
-- ARGV[1] node   ARGV[2] user   ARGV[3] +1 / -1   ARGV[4] changes channel
-- ARGV[5] lifetime (ms) of the grace mark, 0 = none   ARGV[6] spread channel
-- KEYS[5] lives (hash node → the origin of the life holding it)   ARGV[7] origin
-- Returns {changed, nodes, back}: changed = 1 if the user came online or went offline
-- cluster-wide; nodes = how many nodes hold a session of the user now; back = 1 if
-- the user came online while its grace mark was set (a return within the presence
-- grace: the mark is taken, so no node announces the user offline). Returns -1 if the
-- node is not registered (reaped after missing its heartbeats: rejoin first), or another
-- life of the node id holds it now (nothing is counted: the rejoin says so).
-- The grace mark is set when the user goes offline cluster-wide; the node that ends
-- the grace takes it (presence_grace_end.lua) and only then tells watchers "offline".
-- 'many <user>' / 'one <user>' on the spread channel: the user's sessions went from one
-- node to two / from two to one (per-user limits are then counted in Redis / locally).
local nodes, node_users, user_nodes, mark = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, user, delta = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not redis.call('ZSCORE', nodes, node) or redis.call('HGET', KEYS[5], node) ~= ARGV[7] then
  return -1
end
local nodes_before = redis.call('HLEN', user_nodes)
if redis.call('HINCRBY', node_users, user, delta) <= 0 then
  redis.call('HDEL', node_users, user)
end
if redis.call('HINCRBY', user_nodes, node, delta) <= 0 then
  redis.call('HDEL', user_nodes, node)
end
local nodes_after = redis.call('HLEN', user_nodes)
if nodes_before == 1 and nodes_after == 2 then
  redis.call('PUBLISH', ARGV[6], 'many ' .. user)
elseif nodes_before == 2 and nodes_after == 1 then
  redis.call('PUBLISH', ARGV[6], 'one ' .. user)
end
if (nodes_before > 0) == (nodes_after > 0) then
  return {0, nodes_after, 0}
end
local back = 0
if nodes_after > 0 then
  back = redis.call('DEL', mark)
elseif tonumber(ARGV[5]) > 0 then
  redis.call('SET', mark, '1', 'PX', ARGV[5])
end
redis.call('PUBLISH', ARGV[4], (nodes_after > 0 and 'on ' or 'off ') .. user)
return {1, nodes_after, back}
