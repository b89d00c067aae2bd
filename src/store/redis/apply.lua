-- Applies one user's record as the router decided it (presence::Record), atomically, if nobody
-- changed it since the router read it: a compare-and-set on its revision. The rules are not
-- here: this only writes, indexes, expires, mirrors membership and publishes what was decided.
-- KEYS = meta, user, deadlines, seq, the user's groups set, then the members set of each group
--   joined, then of each group left.
-- ARGV = user id, revision read ('' = none), record JSON ('' = forget the user), then the seed's
--   fields for outside readers, each '' when unchanged: status, lastSeen, deviceId, version;
--   then user key TTL ms (0 = delete it), deadline ms (0 = not indexed), meta TTL ms (0 = none),
--   the number of groups joined and of groups left, their ids (joined first), the updates
--   channel, then per change its status channel and its message (JSON; the sequence number is
--   added here).
-- Returns the revision written, or -1 when the record had changed (read it again).
local meta, user, deadlines, seq, groups = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local u = ARGV[1]
local rev = redis.call('HGET', meta, 'rev') or ''
if rev ~= ARGV[2] then return -1 end
local next_rev = (tonumber(rev) or 0) + 1
if ARGV[3] == '' then
  redis.call('DEL', meta, user)
  redis.call('ZREM', deadlines, u)
  return next_rev
end
local fields = { 'rec', ARGV[3], 'rev', next_rev }
if rev == '' then table.insert(fields, 'role'); table.insert(fields, 'mobile') end
local names = { 'status', 'lastSeen', 'deviceId', 'version' }
for i = 1, 4 do
  if ARGV[3 + i] ~= '' then
    table.insert(fields, names[i]); table.insert(fields, ARGV[3 + i])
  end
end
redis.call('HSET', meta, unpack(fields))
local pttl = tonumber(ARGV[8])
if pttl > 0 then redis.call('SET', user, '1', 'PX', pttl) else redis.call('DEL', user) end
local deadline = tonumber(ARGV[9])
if deadline > 0 then redis.call('ZADD', deadlines, deadline, u) else redis.call('ZREM', deadlines, u) end
local keep = tonumber(ARGV[10])
if keep > 0 then redis.call('PEXPIRE', meta, keep) elseif ARGV[4] ~= '' then redis.call('PERSIST', meta) end
local joined, left = tonumber(ARGV[11]), tonumber(ARGV[12])
for i = 1, joined + left do
  local group = ARGV[12 + i]
  -- pcall: a key of another type under one of these names (a database shared with other
  -- software) must not stop the record's write and its publication half-way.
  if i <= joined then
    redis.pcall('SADD', groups, group); redis.pcall('SADD', KEYS[5 + i], u)
  else
    redis.pcall('SREM', groups, group); redis.pcall('SREM', KEYS[5 + i], u)
  end
end
local channel = 13 + joined + left
for i = channel + 1, #ARGV, 2 do
  local message = string.sub(ARGV[i + 1], 1, -2) .. ',"seq":' .. redis.call('INCR', seq) .. '}'
  redis.call('PUBLISH', ARGV[channel], message)
  redis.call('PUBLISH', ARGV[i], message)
end
return next_rev
