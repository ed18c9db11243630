-- Leases permits from a provider's sliding window, on Redis's clock.
-- KEYS: used (string), leases (zset: id -> µs its permits count from, plus
--       the lease time for a lease still out), permits (hash: id -> count).
-- ARGV: [1] limit, [2] window µs, [3] lease µs, [4] permits wanted,
--       [5] clock shift µs (0 but in tests), [6] id of a lease handed back
--       ('' for none), [7] its unused permits, [8] id for a new lease,
--       [9] permits spent while Redis was unreachable, [10] live workers,
--       [11] the id those are booked under: [9] is the total under that
--       id, so a try sent again (after a timeout) counts only what is new.
-- Returns {granted, left in the window, now}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[5])
local limit, window, lease, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')

-- Forget permits that left the window.
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - window)
for _, id in ipairs(gone) do
  used = used - tonumber(redis.call('HGET', KEYS[3], id) or '0')
  redis.call('HDEL', KEYS[3], id)
end
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
end

-- A lease handed back: its unused permits return to the window; the ones
-- it used count from now on (each was used before now).
local back = ARGV[6]
if back ~= '' then
  local held = tonumber(redis.call('HGET', KEYS[3], back) or '0')
  local unused = math.min(tonumber(ARGV[7]), held)
  used = used - unused
  if held - unused > 0 then
    redis.call('HSET', KEYS[3], back, held - unused)
    local counted = tonumber(redis.call('ZSCORE', KEYS[2], back))
    if counted and now < counted then
      redis.call('ZADD', KEYS[2], now, back)
    end
  else
    redis.call('HDEL', KEYS[3], back)
    redis.call('ZREM', KEYS[2], back)
  end
end

local id = ARGV[8]
-- Calls made while Redis was unreachable count from now, whatever the limit.
local offline, offline_id = tonumber(ARGV[9]), ARGV[11]
if offline > 0 and offline_id ~= '' then
  local booked = tonumber(redis.call('HGET', KEYS[3], offline_id) or '0')
  if offline > booked then
    redis.call('HSET', KEYS[3], offline_id, offline)
    redis.call('ZADD', KEYS[2], now, offline_id)
    used = used + offline - booked
  end
end

-- A new lease: never past the limit, and no more than this worker's share
-- of what is left, so a nearly full window is spread over the fleet.
local granted = 0
local left = limit - used
if want > 0 and left > 0 then
  local share = math.max(1, math.floor(left / math.max(1, tonumber(ARGV[10]))))
  granted = math.min(want, left, share)
  redis.call('HSET', KEYS[3], id, granted)
  redis.call('ZADD', KEYS[2], now + lease, id)
  used = used + granted
end

redis.call('SET', KEYS[1], used)
local ttl = math.floor((window + lease) / 1000) + 1000
for i = 1, 3 do
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return {granted, limit - used, now}
