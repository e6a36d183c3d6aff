-- One change to the cluster's shared records (users, contacts, memberships, read marks,
-- invite uses), atomically: the condition, the record, the log entry and the publish.
-- KEYS[1] meta (hash: seq, epoch)   KEYS[2] log (stream)   KEYS[3] records (hash)
-- ARGV[1] op: 'put' | 'create' (only if the key is absent) | 'delete'
--             | 'count' (the value is a count: add 1, unless it reached ARGV[4])
--             | 'uncount' (take back one count: an invite's use whose sign-up failed)
-- ARGV[2] record key   ARGV[3] value (put, create)   ARGV[4] limit (count; '' = none);
--         for put, a guard ('' = none): the record must exist and begin with it (a user
--         record's start up to its token hash: a node's stale copy of a user whose token
--         was replaced, or who was removed, by the operator does not undo that)
-- ARGV[5] epoch to create if the log has none   ARGV[6] channel   ARGV[7] origin
-- ARGV[8] how many entries the log keeps ('' = all): older ones are trimmed; a node
--         behind the trim reloads the snapshot (the records hash), which holds them all
-- Returns {seq, status, value, epoch}: status 1 changed (seq is the change's), 0 nothing
-- to change (seq is the log's head), -1 refused (the key exists / the count is at its
-- limit, a put's guard not met); value is the record's value now (false if it has none); epoch the log's.
local meta, log, records = KEYS[1], KEYS[2], KEYS[3]
local op, key = ARGV[1], ARGV[2]
local current = redis.call('HGET', records, key)

local function unchanged(status, now)
  return {tonumber(redis.call('HGET', meta, 'seq') or '0'), status, now,
          redis.call('HGET', meta, 'epoch')}
end

local value
if op == 'put' then
  local guard = ARGV[4]
  if guard ~= '' and not (current and string.sub(current, 1, #guard) == guard) then
    return unchanged(-1, current or false)
  end
  value = ARGV[3]
elseif op == 'create' then
  if current then return unchanged(-1, current) end
  value = ARGV[3]
elseif op == 'delete' then
  if not current then return unchanged(0, false) end
  value = false
elseif op == 'count' then
  local n = tonumber(current or '0')
  if ARGV[4] ~= '' and n >= tonumber(ARGV[4]) then return unchanged(-1, current or false) end
  value = string.format('%d', n + 1)
elseif op == 'uncount' then
  if not current then return unchanged(0, false) end
  value = string.format('%d', math.max(tonumber(current) - 1, 0))
else
  return redis.error_reply('ERR unknown state op ' .. op)
end
if value == current then return unchanged(0, current) end

local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', meta, 'epoch', epoch)
end
if value then
  redis.call('HSET', records, key, value)
else
  redis.call('HDEL', records, key)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local seq_text = string.format('%d', seq)
-- The entry: 'p <key> <value>' (put) or 'd <key>' (delete). Keys hold no spaces.
local entry
if value then entry = 'p ' .. key .. ' ' .. value else entry = 'd ' .. key end
if ARGV[8] ~= '' then
  redis.call('XADD', log, 'MAXLEN', ARGV[8], seq_text .. '-0', 'm', entry, 'o', ARGV[7])
else
  redis.call('XADD', log, seq_text .. '-0', 'm', entry, 'o', ARGV[7])
end
redis.call('PUBLISH', ARGV[6], seq_text .. ' ' .. epoch .. ' ' .. ARGV[7] .. ' ' .. entry)
return {seq, 1, value, epoch}
