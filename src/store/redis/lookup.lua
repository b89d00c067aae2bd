-- ARGV = user ids: { online (1/0), lastSeen, deviceId, version } for each, in order. A user whose
-- key has expired is offline here even before a router has processed the expiry.
local out = {}
for _, u in ipairs(ARGV) do
  local user, meta = keys_of(u)
  local m = redis.call('HMGET', meta, 'status', 'lastSeen', 'deviceId', 'version')
  local online = m[1] == 'online' and redis.call('EXISTS', user) == 1
  table.insert(out, online and 1 or 0)
  table.insert(out, tonumber(m[2]) or 0)
  table.insert(out, m[3] or '')
  table.insert(out, tonumber(m[4]) or 0)
end
return out
