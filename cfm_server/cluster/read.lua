-- Read a window of a room's entries with the current state of each changed message,
-- atomically (no change lands between the stream read and the changes read).
-- KEYS[1] meta   KEYS[2] log   KEYS[3] changes (see append.lua)
-- ARGV[1] 'after' or 'before'   ARGV[2] the seq ('' with before: above the newest)
-- ARGV[3] limit
-- ARGV[4] (optional) a byte budget, ARGV[5] its slack: a history page's read. Entries
--   are taken from the page's anchor outwards (after: oldest first; before: newest
--   first) and the read stops before the entry that would take what it holds over the
--   budget (it always takes one): a page of long messages is not read whole, only to be
--   cut by the node. Each entry weighs what it weighs at least in the node's own measure
--   of a page (pages.stored_msg_size): the frame's bytes less the slack, or an edited
--   message's current text. So the read never stops before an entry the node's page
--   would hold; where it stops is the node's to decide.
-- Returns, in ascending seq, {seq, m, o, h, edited text, edited ts, reactions} per entry
-- ('' where there is none); a deleted message (or an erased edit entry) comes from the
-- changes hash under its seq, so the sequence a reader sees stays gapless. When the
-- budget stopped the read, the last element is not a row but the seq of the entry it
-- stopped before (an integer): that one exists, the page's range goes on past it.
local meta, log, chg = KEYS[1], KEYS[2], KEYS[3]
local limit = tonumber(ARGV[3])
local budget = tonumber(ARGV[4] or '')
local slack = tonumber(ARGV[5] or '') or 0
local head = tonumber(redis.call('HGET', meta, 'seq') or '')
if not head then
  local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  head = last and tonumber(string.match(last[1], '^(%d+)')) or 0
end
local lo, hi
if ARGV[1] == 'after' then
  lo = tonumber(ARGV[2]) + 1
  hi = math.min(head, lo + limit - 1)
else
  hi = head
  if ARGV[2] ~= '' then hi = math.min(head, tonumber(ARGV[2]) - 1) end
  lo = math.max(1, hi - limit + 1)
end
if limit <= 0 or hi < lo then return {} end
local changed = redis.call('EXISTS', chg) == 1

-- The seqs in the read's order: from the anchor outwards.
local up = ARGV[1] == 'after'
local first, last, step = lo, hi, 1
if not up then first, last, step = hi, lo, -1 end

-- The stream is read in chunks of seqs in that order (an entry's id is its seq, so a
-- range of seqs is a range of ids): the whole window at once without a budget; with
-- one, a first chunk of FIRST seqs, then as many as the budget left is likely to take at
-- the weight seen so far (and one more, to find where it stops), or the rest at once if
-- what was taken weighs nothing.
local FIRST = 16
local found, read_to = {}, first - step -- entries read; the stream is read up to read_to
local function fetch(from, count)
  read_to = from + (count - 1) * step
  local a, b = math.min(from, read_to), math.max(from, read_to)
  found = {}
  for _, entry in ipairs(redis.call('XRANGE', log, a .. '-0', b .. '-0')) do
    local f, fields = entry[2], {}
    for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
    found[tonumber(string.match(entry[1], '^(%d+)'))] = fields
  end
end

local out, n, spent, stopped = {}, 0, 0, nil
for s = first, last, step do
  if (s - read_to) * step > 0 then
    local left = (last - s) * step + 1
    local count = left
    if budget then
      count = FIRST
      if spent > 0 then
        count = math.floor((budget - spent) * n / spent) + 2
      elseif n > 0 then
        count = left -- short messages weigh nothing: the budget will not stop this read
      end
      count = math.max(1, math.min(left, count))
    end
    fetch(s, count)
  end
  local fields = found[s]
  local m, o, h = nil, '', ''
  if fields then
    m, o, h = fields['m'], fields['o'] or '', fields['h'] or ''
  elseif changed then
    m = redis.call('HGET', chg, 'd:' .. s)
    if m then
      o = redis.call('HGET', chg, 'o:' .. s) or ''
      h = redis.call('HGET', chg, 'h:' .. s) or ''
    end
  end
  if m then
    local text, ts, marks = '', '', ''
    if changed then
      local cur = redis.call('HMGET', chg, 't:' .. s, 'e:' .. s, 'r:' .. s)
      text, ts, marks = cur[1] or '', cur[2] or '', cur[3] or ''
    end
    if budget then
      local weight = #m - slack
      if ts ~= '' then -- edited: the frame holds the first text
        weight = #text
      elseif weight < 0 then
        weight = 0
      end
      if n > 0 and spent + weight > budget then
        stopped = s
        break
      end
      spent = spent + weight
    end
    n = n + 1
    out[n] = {s, m, o, h, text, ts, marks}
  end
end
if not up then -- read newest first: ascending for the reply
  for i = 1, math.floor(n / 2) do out[i], out[n + 1 - i] = out[n + 1 - i], out[i] end
end
if stopped then out[n + 1] = stopped end
return out
