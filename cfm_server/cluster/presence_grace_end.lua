-- The presence grace of a user who went offline ended on a node: may it tell watchers?
-- KEYS[1] user's hash (node → sessions)   KEYS[2] the user's grace mark
-- Returns 1 (tell them: the mark is taken, so no other node does) if the user is still
-- offline and the mark is there; 0 if the user came back (the return took the mark) or
-- another node ended the grace first.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
return redis.call('DEL', KEYS[2])
