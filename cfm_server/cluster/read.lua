-- Read a window of a room's entries with the current state of each changed message,
-- atomically (no change lands between the stream read and the changes read).
-- KEYS[1] meta   KEYS[2] log   KEYS[3] changes (see append.lua)
-- ARGV[1] 'after' or 'before'   ARGV[2] the seq ('' with before: above the newest)
-- ARGV[3] limit
-- Returns, in ascending seq, {seq, m, o, h, edited text, edited ts, reactions} per entry
-- ('' where there is none); a deleted message (or an erased edit entry) comes from the
-- changes hash under its seq, so the sequence a reader sees stays gapless.
local meta, log, chg = KEYS[1], KEYS[2], KEYS[3]
local limit = tonumber(ARGV[3])
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
local found = {}
for _, entry in ipairs(redis.call('XRANGE', log, lo .. '-0', hi .. '-0')) do
  local f, fields = entry[2], {}
  for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
  found[tonumber(string.match(entry[1], '^(%d+)'))] = fields
end
local changed = redis.call('EXISTS', chg) == 1
local out = {}
for s = lo, hi do
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
    out[#out + 1] = {s, m, o, h, text, ts, marks}
  end
end
return out
