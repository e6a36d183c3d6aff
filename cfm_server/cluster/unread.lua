-- Count a user's unread messages and mentions in a room past their read mark, in Redis:
-- a sign-in counts every room the user is in, and reading the entries out to count them
-- on the node would move up to UNREAD_CAP whole messages per room (megabytes for a user
-- in many busy rooms of long messages) for two numbers.
-- KEYS[1] log
-- ARGV[1] after (the read mark)   ARGV[2] limit (seqs after it looked at)   ARGV[3] user
-- Counted as the node counts a page of history: not the user's own, not a change entry
-- (edit, delete, reaction), not deleted (a deleted message is gone from the stream),
-- not hidden from its reader by a block (h = '1' or an origin ending '/h').
-- Returns {unread, mentions}.
local after, limit, user = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local unread, mentions = 0, 0
if limit <= 0 then return {0, 0} end
local range = redis.call('XRANGE', KEYS[1], (after + 1) .. '-0', (after + limit) .. '-0')
for _, entry in ipairs(range) do
  local f, fields = entry[2], {}
  for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
  local o = fields['o'] or ''
  if fields['m'] and fields['h'] ~= '1' and string.sub(o, -2) ~= '/h' then
    local m = cmsgpack.unpack(fields['m'])
    if m['from'] ~= user and m['change'] == nil and m['deleted'] ~= true
        and m['hidden'] ~= true then
      unread = unread + 1
      local named = m['mentions']
      if type(named) == 'table' then
        for _, name in ipairs(named) do
          if name == user then
            mentions = mentions + 1
            break
          end
        end
      end
    end
  end
end
return {unread, mentions}
