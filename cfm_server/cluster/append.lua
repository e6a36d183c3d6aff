-- Store one message of a room, atomically: dedupe, epoch, seq, stream, publish.
-- KEYS[1] meta (hash: seq, epoch)   KEYS[2] log (stream)   KEYS[3] ids (hash: dedupe)
-- ARGV[1] sender   ARGV[2] client id ('' = none: not deduplicated)   ARGV[3] ts (ms)
-- ARGV[4] head, ARGV[5] tail: the msg frame's msgpack bytes before and after seq's value
-- ARGV[6] epoch to create if the room has none   ARGV[7] channel   ARGV[8] origin
-- Returns {seq, ts, epoch, duplicate (0/1)}.
local meta, log, ids = KEYS[1], KEYS[2], KEYS[3]
local sender, cid = ARGV[1], ARGV[2]

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

local field = sender .. ':' .. cid
if cid ~= '' then
  local seen = redis.call('HGET', ids, field)
  if seen then
    local sep = string.find(seen, ':', 1, true)
    return {tonumber(string.sub(seen, 1, sep - 1)), tonumber(string.sub(seen, sep + 1)),
            redis.call('HGET', meta, 'epoch'), 1}
  end
end

local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', meta, 'epoch', epoch)
  -- A stream without its meta (evicted or deleted by hand): go on after its last entry,
  -- under the new epoch, rather than fail on an XADD id that is not above the last one.
  local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  if last then
    redis.call('HSET', meta, 'seq', string.match(last[1], '^(%d+)'))
  end
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local seq_text = string.format('%d', seq)
local msg = ARGV[4] .. mp_uint(seq) .. ARGV[5]
redis.call('XADD', log, seq_text .. '-0', 'm', msg, 'o', ARGV[8])
if cid ~= '' then
  redis.call('HSET', ids, field, seq_text .. ':' .. ARGV[3])
end
redis.call('PUBLISH', ARGV[7], seq_text .. ' ' .. epoch .. ' ' .. ARGV[8] .. ' ' .. msg)
return {seq, tonumber(ARGV[3]), epoch, 0}
