-- Shared by every presence script (prepended when the scripts are loaded).
-- Keys, for a user u: presence:user:{u} = "1" with the TTL (the truth: it exists while u is online),
-- presence:meta:{u} (hash: status, lastSeen, deviceId, role, version, expiresAt, leftAt, offlineAt),
-- presence:conns:{u} (sorted set: one member per live connection, scored by its own deadline),
-- presence:deadlines (sorted set: online users by their next deadline), presence:seq (counter).

local DEADLINES = 'presence:deadlines'
local SEQ = 'presence:seq'
-- An offline user's meta (lastSeen for the bulk API) is kept this long, then forgotten.
local META_RETENTION_MS = 30 * 24 * 3600 * 1000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function keys_of(u)
  return 'presence:user:' .. u, 'presence:meta:' .. u, 'presence:conns:' .. u
end

-- Records a change of status and publishes it, exactly once, on presence:updates (mirrored to
-- presence:online / presence:offline). A quiet change (a record restored after Redis lost its
-- data) is recorded only: dashboards learn it from the snapshot that follows every restore.
local function transition(u, meta, status, now, quiet)
  redis.call('HSET', meta, 'status', status)
  -- presence::next_version: above the previous one and at least now, so a record lost with an
  -- emptied Redis starts again above every version dashboards hold.
  local version = math.max((tonumber(redis.call('HGET', meta, 'version')) or 0) + 1, now)
  redis.call('HSET', meta, 'version', string.format('%d', version))
  if quiet then return end
  local seq = redis.call('INCR', SEQ)
  local m = redis.call('HMGET', meta, 'lastSeen', 'deviceId')
  local update = { userId = u, status = status, version = version, lastSeen = tonumber(m[1]) or 0,
    timestamp = now, seq = seq }
  if m[2] then update.deviceId = m[2] end
  local message = cjson.encode(update)
  redis.call('PUBLISH', 'presence:updates', message)
  redis.call('PUBLISH', 'presence:' .. status, message)
end

local function go_offline(u, user, meta, now, last_seen)
  redis.call('HSET', meta, 'lastSeen', last_seen)
  redis.call('HDEL', meta, 'offlineAt')
  redis.call('DEL', user)
  redis.call('ZREM', DEADLINES, u)
  transition(u, meta, 'offline', now)
  redis.call('PEXPIRE', meta, META_RETENTION_MS)
end

-- Looks at u again at `now`: expires or ends the debounce when due, else files the next deadline.
local function wake(u, now)
  local user, meta, conns = keys_of(u)
  local m = redis.call('HMGET', meta, 'status', 'offlineAt', 'leftAt', 'expiresAt')
  if m[1] ~= 'online' then
    redis.call('ZREM', DEADLINES, u)
    return 0
  end
  local pttl = redis.call('PTTL', user)
  if pttl < 0 then
    go_offline(u, user, meta, now, tonumber(m[4]) or now)
    return 1
  end
  local offline_at = tonumber(m[2])
  if offline_at and offline_at <= now then
    redis.call('ZREMRANGEBYSCORE', conns, '-inf', now)
    if redis.call('ZCARD', conns) == 0 then
      go_offline(u, user, meta, now, tonumber(m[3]) or now)
      return 1
    end
    redis.call('HDEL', meta, 'offlineAt')
    offline_at = nil
  end
  local next_deadline = now + pttl
  if offline_at and offline_at < next_deadline then next_deadline = offline_at end
  redis.call('ZADD', DEADLINES, next_deadline, u)
  return 0
end
