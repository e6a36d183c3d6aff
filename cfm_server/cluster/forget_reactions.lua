-- A removed user's reactions out of one room's changed messages (cfm admin remove-user
-- on a cluster, cluster/admin.py): whoever claims the handle next has reacted to
-- nothing. Atomic per call, so a reaction made meanwhile by a node (append.lua edits the
-- same fields) is neither lost nor half-removed.
-- KEYS[1] the room's chg hash   ARGV[1] the user   ARGV[2..] fields r:<seq> to look at
-- A field holds one line "<name> <emoji>\n" per reaction (append.lua). Returns how many
-- reactions went.
local chg, prefix = KEYS[1], ARGV[1] .. ' '
local gone = 0
for i = 2, #ARGV do
  local marks = redis.call('HGET', chg, ARGV[i])
  if marks then
    local kept = {}
    for line in string.gmatch(marks, '[^\n]*\n') do
      if string.sub(line, 1, #prefix) == prefix then
        gone = gone + 1
      else
        kept[#kept + 1] = line
      end
    end
    local now = table.concat(kept)
    if now == '' then
      redis.call('HDEL', chg, ARGV[i])
    elseif now ~= marks then
      redis.call('HSET', chg, ARGV[i], now)
    end
  end
end
return gone
