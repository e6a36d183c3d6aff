-- A session of a user started (ARGV[3] = 1) or ended (ARGV[3] = -1) on a node.
-- KEYS[1] nodes (zset node → expiry)   KEYS[2] node's hash (user → sessions)
-- KEYS[3] user's hash (node → sessions)
-- ARGV[1] node   ARGV[2] user   ARGV[3] +1 / -1   ARGV[4] changes channel
-- Returns 1 if the user came online or went offline cluster-wide, 0 if not,
-- -1 if the node is not registered (reaped after missing its heartbeats: rejoin first).
local nodes, node_users, user_nodes = KEYS[1], KEYS[2], KEYS[3]
local node, user, delta = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not redis.call('ZSCORE', nodes, node) then
  return -1
end
local was_online = redis.call('EXISTS', user_nodes) == 1
if redis.call('HINCRBY', node_users, user, delta) <= 0 then
  redis.call('HDEL', node_users, user)
end
if redis.call('HINCRBY', user_nodes, node, delta) <= 0 then
  redis.call('HDEL', user_nodes, node)
end
local is_online = redis.call('EXISTS', user_nodes) == 1
if was_online == is_online then
  return 0
end
redis.call('PUBLISH', ARGV[4], (is_online and 'on ' or 'off ') .. user)
return 1
