-- One change to the cluster's shared records (users, contacts, memberships, read marks,
-- invite uses), atomically: the condition, the record, the log entry and the publish.
-- KEYS[1] meta (hash: seq, epoch)   KEYS[2] log (stream)   KEYS[3] records (hash)
-- ARGV[1] op: 'put' | 'create' (only if the key is absent) | 'delete'
-- ARGV[2] record key   ARGV[3] value (put, create)   ARGV[4] for create, the limit of
--         its count (ARGV[10]; '' = none); for put, a guard ('' = none): the record must
--         exist and begin with it (a user record's start up to its token hash: a node's
--         stale copy of a user whose token was replaced, or who was removed, by the
--         operator does not undo that)
-- ARGV[5] epoch to create if the log has none   ARGV[6] channel   ARGV[7] origin
-- ARGV[8] how many entries the log keeps ('' = no count): older ones are trimmed; a node
--         behind the trim reloads the snapshot (the records hash), which holds them all
-- ARGV[9] (optional; absent or '' = none) the log's byte budget: the meta's 'bytes'
--         counts each entry's bytes (``cost`` below); over the budget,
--         the oldest entries go until it is back at 7/8 of it (at most TRIM_STEP a call)
-- ARGV[10] (optional; for create) a count key, counted in the same call as the create
--         with ARGV[4] its limit: a sign-up's invite use and its identity, both or
--         neither (a lost reply or an outage between two calls cannot leave a use counted
--         for no account, nor an account whose use was given back). Its change is
--         logged first, under the seq before the record's.
-- ARGV[10], ARGV[11] (put only; absent or '' = none) a second record and its value, put
--         in the same call: a new group room's first member and its creator, both or
--         neither (two calls could leave the membership without its creator: a room
--         nobody moderates). Its change is logged first, under the seq before the
--         record's, and reported as a count's is.
-- Returns {seq, status, value, epoch}: status 1 changed (seq is the change's), 0 nothing
-- to change (seq is the log's head), -1 refused (the key exists, a put's guard not
-- met), -2 refused (a create's ARGV[10] count at its limit);
-- value is the record's value now (false if it has none); epoch the log's. A create with
-- a count adds {count seq, count value}.
local meta, log, records = KEYS[1], KEYS[2], KEYS[3]
local op, key = ARGV[1], ARGV[2]
local current = redis.call('HGET', records, key)

local function unchanged(status, now)
  return {tonumber(redis.call('HGET', meta, 'seq') or '0'), status, now,
          redis.call('HGET', meta, 'epoch')}
end

local value
local counted, count_value = ARGV[10], nil
if (op ~= 'create' and op ~= 'put') or counted == '' then counted = nil end
if op == 'put' then
  local guard = ARGV[4]
  if guard ~= '' and not (current and string.sub(current, 1, #guard) == guard) then
    return unchanged(-1, current or false)
  end
  value = ARGV[3]
  if counted then
    count_value = ARGV[11]
    if redis.call('HGET', records, counted) == count_value then counted = nil end
  end
elseif op == 'create' then
  if current then return unchanged(-1, current) end
  value = ARGV[3]
  if counted then
    local n = tonumber(redis.call('HGET', records, counted) or '0')
    if ARGV[4] ~= '' and n >= tonumber(ARGV[4]) then return unchanged(-2, false) end
    count_value = string.format('%d', n + 1)
  end
elseif op == 'delete' then
  if not current then return unchanged(0, false) end
  value = false
else
  return redis.error_reply('ERR unknown state op ' .. op)
end
if value == current and not counted then return unchanged(0, current) end

local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', meta, 'epoch', epoch)
end
-- The bytes an entry costs Redis, its two values and more: its id's delta, flags,
-- lengths and back-lengths in the listpack, and its share of a listpack node allocated
-- to 4 KiB (MEMORY USAGE measured 1.16-1.33 times the values, +21 bytes for the
-- smallest: this counts a third and 24 bytes more, docs/cluster.md "Sizing Redis").
local function cost(values) return values + math.floor(values / 3) + 24 end
local TRIM_STEP = 64
local total

-- One record's change: the record, the log entry under the next seq, its bytes counted,
-- the publish. Returns the seq and the entry's id.
local function log_change(k, v)
  if v then
    redis.call('HSET', records, k, v)
  else
    redis.call('HDEL', records, k)
  end
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local seq_text = string.format('%d', seq)
  -- The entry: 'p <key> <value>' (put) or 'd <key>' (delete). Keys hold no spaces.
  local entry
  if v then entry = 'p ' .. k .. ' ' .. v else entry = 'd ' .. k end
  local id = seq_text .. '-0'
  if ARGV[8] ~= '' then
    redis.call('XADD', log, 'MAXLEN', ARGV[8], id, 'm', entry, 'o', ARGV[7])
  else
    redis.call('XADD', log, id, 'm', entry, 'o', ARGV[7])
  end
  local size = cost(#entry + #ARGV[7])
  total = redis.call('HINCRBY', meta, 'bytes', size)
  if total == size and redis.call('XLEN', log) > 1 then
    -- A log written before its bytes were counted (up to 100,000 entries of any size):
    -- dropped but for this entry; a node behind it reloads the snapshot.
    redis.call('XTRIM', log, 'MINID', id)
  end
  redis.call('PUBLISH', ARGV[6], seq_text .. ' ' .. epoch .. ' ' .. ARGV[7] .. ' ' .. entry)
  return seq, id
end

local count_seq
if counted then count_seq = log_change(counted, count_value) end
local seq, id = log_change(key, value)
local budget = tonumber(ARGV[9] or '')
if budget and total > budget then
  local old = redis.call('XRANGE', log, '-', '+', 'COUNT', TRIM_STEP)
  local sizes, seen = {}, 0
  for i = 1, #old do
    local fields, n = old[i][2], 0
    for j = 2, #fields, 2 do n = n + #fields[j] end
    sizes[i] = cost(n)
    seen = seen + sizes[i]
  end
  local last = #old
  if #old < TRIM_STEP or old[#old][1] == id then
    -- The whole log was read: its exact size (the count drifts when a count cap or an
    -- older node's script trimmed or added entries), and never its newest entry.
    total, last = seen, #old - 1
  end
  local target, cut = budget - math.floor(budget / 8), 0
  while cut < last and total > target do
    cut = cut + 1
    total = total - sizes[cut]
  end
  if cut > 0 then
    local first_kept = cut < #old and old[cut + 1][1]
                       or string.format('%d-0', tonumber(string.match(old[cut][1], '^%d+')) + 1)
    redis.call('XTRIM', log, 'MINID', first_kept)
  end
  redis.call('HSET', meta, 'bytes', total)
end
if counted then return {seq, 1, value, epoch, count_seq, count_value} end
return {seq, 1, value, epoch}
