-- How a call went. KEYS: [1] state hash, [2] failures zset.
-- ARGV: [1] clock shift µs, [2] 1 success | 0 failure, [3] 1 when this call
--       was the probe, [4] failures that open, [5] their window µs,
--       [6] cooldown µs, [7] a unique id for this failure.
-- Returns {open_until (0: closed), 1 when this call opened the circuit}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])
local window, cooldown = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl = math.floor((window + cooldown) / 1000) * 2 + 1000
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {0, 0}
end
if ARGV[3] == '1' then
  -- A failed probe: open again for the whole cooldown.
  redis.call('HSET', KEYS[1], 'open_until', now + cooldown)
  redis.call('HDEL', KEYS[1], 'probe_until')
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {now + cooldown, 1}
end
redis.call('ZADD', KEYS[2], now, ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('PEXPIRE', KEYS[2], ttl)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until <= now and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'open_until', now + cooldown)
  redis.call('HDEL', KEYS[1], 'probe_until')
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {now + cooldown, 1}
end
return {open_until, 0}
