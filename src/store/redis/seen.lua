-- A connect or heartbeat write: ARGV = userId, connection member, deviceId ('' = none), ttl ms,
-- age ms (how long ago the router received it), quiet ('1' when restoring a record Redis lost:
-- no update is published). Online again if the user was not.
local u, member, device = ARGV[1], ARGV[2], ARGV[3]
local quiet = ARGV[6] == '1'
local ttl, age = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local at = now - age
local remaining = at + ttl - now
if remaining <= 0 then return 0 end
local user, meta, conns = keys_of(u)
-- A TTL that ran out but was not processed yet is processed first: offline, then online again.
if redis.call('EXISTS', user) == 0 then wake(u, now) end
local current = redis.call('PTTL', user)
if current < remaining then
  redis.call('SET', user, '1', 'PX', remaining)
  current = remaining
end
redis.call('ZADD', conns, at + ttl, member)
if redis.call('PTTL', conns) < remaining then redis.call('PEXPIRE', conns, remaining) end
local m = redis.call('HMGET', meta, 'status', 'lastSeen')
if at >= (tonumber(m[2]) or 0) then
  redis.call('HSET', meta, 'lastSeen', at)
  if device ~= '' then redis.call('HSET', meta, 'deviceId', device) end
end
redis.call('HSET', meta, 'role', 'mobile', 'expiresAt', now + current)
redis.call('PERSIST', meta)
redis.call('HDEL', meta, 'offlineAt')
redis.call('ZADD', DEADLINES, now + current, u)
if m[1] ~= 'online' then transition(u, meta, 'online', now, quiet) end
return 1
