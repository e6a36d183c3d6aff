-- Rewrite a room's stream without the bytes its deleted entries left behind.
-- KEYS[1] log (stream)   KEYS[2] a scratch key of the same slot   ARGV[1] page size
-- XDEL only marks a stream entry deleted: its bytes stay in the stream's node (a
-- listpack of up to ~100 entries) until every entry of that node is deleted, and so in
-- DUMP, in RDB files and in a rewritten AOF. Copying the live entries to a new stream
-- under the same ids (and the same last id, so XADD goes on where it was) and renaming
-- it over the old one leaves none of them. Returns the number of entries copied.
local log, scratch, page = KEYS[1], KEYS[2], tonumber(ARGV[1])
if redis.call('EXISTS', log) == 0 then return 0 end
local last, added, maxdel
local info = redis.call('XINFO', 'STREAM', log)
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1]
  elseif info[i] == 'entries-added' then added = info[i + 1]
  elseif info[i] == 'max-deleted-entry-id' then maxdel = info[i + 1] end
end
redis.call('DEL', scratch)
local copied, from = 0, '-'
while true do
  local entries = redis.call('XRANGE', log, from, '+', 'COUNT', page)
  for _, e in ipairs(entries) do
    redis.call('XADD', scratch, e[1], unpack(e[2]))
  end
  copied = copied + #entries
  if #entries < page then break end
  from = '(' .. entries[#entries][1]
end
if copied == 0 then  -- every entry deleted: an empty stream that keeps its last id
  redis.call('XADD', scratch, last, 'm', '')
  redis.call('XDEL', scratch, last)
end
redis.call('XSETID', scratch, last, 'ENTRIESADDED', added, 'MAXDELETEDID', maxdel)
redis.call('RENAME', scratch, log)
return copied
