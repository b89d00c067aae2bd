-- The users online now: { seq, now, u1, lastSeen1, deviceId1, version1, u2, ... }.
local now = now_ms()
local out = { tonumber(redis.call('GET', SEQ) or '0'), now }
for _, u in ipairs(redis.call('ZRANGE', DEADLINES, 0, -1)) do
  local user, meta = keys_of(u)
  local m = redis.call('HMGET', meta, 'status', 'lastSeen', 'deviceId', 'version')
  if m[1] == 'online' and redis.call('EXISTS', user) == 1 then
    table.insert(out, u)
    table.insert(out, tonumber(m[2]) or 0)
    table.insert(out, m[3] or '')
    table.insert(out, tonumber(m[4]) or 0)
  end
end
return out
