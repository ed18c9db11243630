-- What a provider's window holds now, without changing it: it reads a
-- Redis that refuses writes (OOM) as well.
-- KEYS: used, leases, permits (as lease.lua). ARGV: [1] window µs,
-- [2] clock shift µs. Returns the permits in the window now.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
for _, id in ipairs(gone) do
  used = used - tonumber(redis.call('HGET', KEYS[3], id) or '0')
end
return used
