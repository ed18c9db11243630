-- May a call go to this provider? KEYS[1]: the breaker's state hash.
-- ARGV: [1] clock shift µs, [2] how long a probe may take, µs.
-- Returns {0 no | 1 yes | 2 yes, as the one probe; open_until; now}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then
  return {1, 0, now}
end
if now < open_until then
  return {0, open_until, now}
end
-- Cooldown over: half-open, one probe at a time across the fleet.
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if probe_until > now then
  return {0, open_until, now}
end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
return {2, open_until, now}
