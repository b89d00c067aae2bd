-- A connection closed: ARGV = userId, connection member, debounce ms. When it was the user's last
-- live connection, they go offline now (debounce 0) or when the debounce ends (the sweeper).
local u, member, debounce = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local user, meta, conns = keys_of(u)
redis.call('ZREM', conns, member)
redis.call('ZREMRANGEBYSCORE', conns, '-inf', now)
if redis.call('ZCARD', conns) > 0 then return 0 end
if redis.call('HGET', meta, 'status') ~= 'online' then return 0 end
redis.call('HSET', meta, 'leftAt', now)
if debounce == 0 then
  go_offline(u, user, meta, now, now)
  return 0
end
redis.call('HSET', meta, 'offlineAt', now + debounce)
return wake(u, now)
