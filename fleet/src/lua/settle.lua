-- Settles a worker that is gone, for one UTC day: its spend there becomes
-- what its calls cost (from its usage log), and what it held reserved goes
-- back. Setting, not adding: settling again changes nothing.
-- KEYS[1]: the day's hash. ARGV: [1] the worker's spend tag, [2] µUSD its
-- calls cost that day.
-- A worker that never reserved there that day (it ran without this Redis)
-- is not settled. Returns the µUSD added to the day's spend.
local day, tag, cost = KEYS[1], ARGV[1], tonumber(ARGV[2])
local spent_key, held_key = 'w:' .. tag .. ':spent', 'w:' .. tag .. ':held'
if redis.call('HEXISTS', day, held_key) == 0 then
  return 0
end
local booked = tonumber(redis.call('HGET', day, spent_key) or '0')
local held = tonumber(redis.call('HGET', day, held_key) or '0')
redis.call('HINCRBY', day, 'spent', cost - booked)
redis.call('HINCRBY', day, 'reserved', 0 - held)
redis.call('HSET', day, spent_key, cost, held_key, 0)
redis.call('EXPIRE', day, 3 * 86400)
return cost - booked
