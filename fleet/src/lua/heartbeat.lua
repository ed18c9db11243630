-- A worker's heartbeat. KEYS[1]: the workers zset.
-- ARGV: worker id, µs a worker counts as alive after its last beat, clock shift (µs).
-- Returns how many workers are alive.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[3])
local alive = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - alive)
redis.call('PEXPIRE', KEYS[1], math.floor(alive / 1000) + 1000)
return redis.call('ZCARD', KEYS[1])
