-- ARGV = limit: every user whose deadline has passed, at most `limit` of them. Safe to run on
-- every router at once: each transition happens once, under Redis's script atomicity.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', DEADLINES, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, u in ipairs(due) do wake(u, now) end
return #due
