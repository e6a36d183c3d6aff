-- Store messages of rooms, one after the other, each as a whole: dedupe, epoch, seq,
-- stream, change, publish. The batcher merges the appends of a loop turn into one call
-- (batcher.py; on a Redis Cluster those of one slot): message i has the keys
-- KEYS[4i-3 .. 4i] and a run of ARGV led by the run's length.
-- Its keys: meta (hash: seq, epoch), log (stream), ids (hash: dedupe), changes (hash: the
-- current state of changed messages, see keys.room_changes).
-- Its run: [1] sender   [2] client id ('' = none: not deduplicated)   [3] ts (ms)
-- [4] head, [5] tail: the msg frame's msgpack bytes before and after seq's value
-- [6] epoch to create if the room has none (one derived from it if its stream has entries)
-- [7] channel   [8] origin
-- A change entry (message changes, docs/protocol.md) also gives:
-- [9] change ('' = a plain message)   [10] target seq   [11] apply (1/0: a change hidden
-- by a block is stored but not applied)   [12] emoji
-- [13] an edit: the tail of the entry with its text erased; a delete: the target's
-- tombstone (its msg frame with deleted: true, no text)   [14] an edit's new text
-- Returns one reply per message, in order: {seq, ts, epoch, duplicate (0/1), erased (1:
-- an edit stored without its text)}, or the error that stopped that message (the others
-- are stored all the same, as separate calls would have been).
-- The smallest msgpack encoding of a non-negative integer, as msgpack-python writes it,
-- so that head .. seq .. tail equals what the node would have encoded itself.
local function mp_uint(n)
  if n < 128 then return string.char(n) end
  if n < 256 then return '\204' .. string.char(n) end
  if n < 65536 then return '\205' .. string.char(math.floor(n / 256), n % 256) end
  local out, width, marker = {}, 4, '\206'
  if n >= 4294967296 then width, marker = 8, '\207' end
  for i = width, 1, -1 do
    out[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return marker .. table.concat(out)
end

-- The epoch of each room met in this call (by its meta key): only this script sets one,
-- so a room's second message in the call need not read it again.
local epochs = {}

-- One message: its keys, and a = its run of ARGV.
local function append(meta, log, ids, chg, a)
  local sender, cid = a[1], a[2]
  local field = sender .. ':' .. cid
  if cid ~= '' then
    local seen = redis.call('HGET', ids, field)
    if seen then
      local sep = string.find(seen, ':', 1, true)
      return {tonumber(string.sub(seen, 1, sep - 1)), tonumber(string.sub(seen, sep + 1)),
              epochs[meta] or redis.call('HGET', meta, 'epoch') or '', 1}  -- '': meta lost
    end
  end

  local epoch = epochs[meta] or redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = a[6]
    -- A stream without its meta (evicted or deleted by hand): go on after its last entry,
    -- under a new epoch, rather than fail on an XADD id that is not above the last one.
    -- New even if the node proposed the epoch it knows (a node that has seen none of the
    -- room's messages proposes its own, as for a room just made): the stream shows the
    -- room had a history, whose dedupe and changes may be gone with the meta. Derived
    -- from the proposal and the last entry's id (a script has no randomness of its own:
    -- math.random repeats itself from one call to the next).
    local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
    if last then
      epoch = string.sub(redis.sha1hex(epoch .. ' ' .. last[1]), 1, 16)
      redis.call('HSET', meta, 'seq', string.match(last[1], '^(%d+)'))
    end
    redis.call('HSET', meta, 'epoch', epoch)
  end
  epochs[meta] = epoch
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local seq_text = string.format('%d', seq)
  local msg = a[4] .. mp_uint(seq) .. a[5]
  local change = a[9] or ''
  local erased_now = 0
  if change ~= '' then
    -- The change applied to its target in the same script: no reader ever sees the entry
    -- without its effect, or the effect without the entry.
    local target = a[10]
    local dead = redis.call('HEXISTS', chg, 'd:' .. target) == 1
    if change == 'edit' then
      local erased = a[4] .. mp_uint(seq) .. a[13]
      if dead then
        msg, erased_now = erased, 1  -- its target was deleted meanwhile (another node): keep no text
      else
        -- What the entry becomes if its target is deleted later, and where to find it.
        redis.call('HSET', chg, 'k:' .. seq_text, erased)
        local edits = redis.call('HGET', chg, 'x:' .. target) or ''
        redis.call('HSET', chg, 'x:' .. target, edits .. seq_text .. ' ')
        if a[11] == '1' then
          redis.call('HSET', chg, 't:' .. target, a[14], 'e:' .. target, a[3])
        end
      end
    elseif change == 'delete' and not dead and a[11] == '1' then
      -- A stream entry cannot be rewritten: the target and its edit entries leave the
      -- stream, and the changes hash keeps their text-free copies under the same seqs.
      local function erase(s, copy)
        local entry = redis.call('XRANGE', log, s .. '-0', s .. '-0')[1]
        if entry then
          local f = entry[2]
          for i = 1, #f, 2 do
            if f[i] == 'o' then redis.call('HSET', chg, 'o:' .. s, f[i + 1]) end
            if f[i] == 'h' then redis.call('HSET', chg, 'h:' .. s, f[i + 1]) end
          end
          redis.call('XDEL', log, s .. '-0')
        end
        redis.call('HSET', chg, 'd:' .. s, copy)
      end
      erase(target, a[13])
      for s in string.gmatch(redis.call('HGET', chg, 'x:' .. target) or '', '%d+') do
        local copy = redis.call('HGET', chg, 'k:' .. s)
        if copy then
          erase(s, copy)
          redis.call('HDEL', chg, 'k:' .. s)
        end
      end
      redis.call('HDEL', chg, 't:' .. target, 'e:' .. target, 'r:' .. target, 'x:' .. target)
    elseif (change == 'react' or change == 'unreact') and not dead and a[11] == '1' then
      -- One line "<name> <emoji>" per reaction, in the order they were made (neither
      -- holds a space or a newline).
      local line = sender .. ' ' .. a[12] .. '\n'
      local marks = redis.call('HGET', chg, 'r:' .. target) or ''
      local at = string.find(marks, line, 1, true)
      while at and at > 1 and string.sub(marks, at - 1, at - 1) ~= '\n' do
        at = string.find(marks, line, at + 1, true)
      end
      if change == 'react' and not at then
        redis.call('HSET', chg, 'r:' .. target, marks .. line)
      elseif change == 'unreact' and at then
        marks = string.sub(marks, 1, at - 1) .. string.sub(marks, at + #line)
        if marks == '' then
          redis.call('HDEL', chg, 'r:' .. target)
        else
          redis.call('HSET', chg, 'r:' .. target, marks)
        end
      end
    end
  end
  redis.call('XADD', log, seq_text .. '-0', 'm', msg, 'o', a[8])
  if cid ~= '' then
    redis.call('HSET', ids, field, seq_text .. ':' .. a[3])
  end
  redis.call('PUBLISH', a[7], seq_text .. ' ' .. epoch .. ' ' .. a[8] .. ' ' .. msg)
  return {seq, tonumber(a[3]), epoch, 0, erased_now}
end

local replies, at = {}, 1
for i = 1, #KEYS / 4 do
  local n = tonumber(ARGV[at])
  local args = {unpack(ARGV, at + 1, at + n)}
  at = at + n + 1
  local ok, reply = pcall(append, KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1],
                          KEYS[4 * i], args)
  if ok then
    replies[i] = reply
  elseif type(reply) == 'table' and reply.err then
    replies[i] = reply  -- a command's error reply (WRONGTYPE, OOM …)
  else
    replies[i] = {err = 'ERR ' .. tostring(reply)}
  end
end
return replies
