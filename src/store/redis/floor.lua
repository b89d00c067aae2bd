-- Writes one floor as the router decided it (ptt::claim and ptt::Talk), atomically, if nobody
-- changed it since the router read it: a compare-and-set on the talk holding it. The rules are
-- not here: this only writes, expires and indexes what was decided.
-- KEYS = the floor, the index of floors (score: when each frees itself, on the routers' clock).
-- ARGV = the talk read ('' = none), the talk to write ('' = free the floor), the record, the
--   milliseconds until it frees itself (counted on Redis's clock), when that is on the router's
--   clock (the index's score), the router's now (entries of the index before it are dropped).
-- Returns 1 when written, 0 when the floor had changed (read it again).
local floor, index = KEYS[1], KEYS[2]
local talk = redis.call('HGET', floor, 'talk') or ''
if talk ~= ARGV[1] then return 0 end
redis.call('ZREMRANGEBYSCORE', index, '-inf', ARGV[6])
if ARGV[2] == '' then
  redis.call('DEL', floor)
  redis.call('ZREM', index, floor)
  return 1
end
redis.call('HSET', floor, 'talk', ARGV[2], 'rec', ARGV[3])
redis.call('PEXPIRE', floor, ARGV[4])
redis.call('ZADD', index, ARGV[5], floor)
return 1
