-- Reserves or settles spend for one UTC day. KEYS[1]: the day's hash.
-- ARGV: [1] µUSD to reserve (0 to only settle), [2] µUSD reserved to release,
--       [3] µUSD spent, [4] day cap (-1: none), [5] organization ('' none),
--       [6] organization's day cap (-1: none).
-- Returns {1 reserved | 0 refused, left today (-1: no cap), left for the organization (-1)}.
local amount, release, spent = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, org, org_cap = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local day = KEYS[1]
local function field(name)
  return tonumber(redis.call('HGET', day, name) or '0')
end
if release ~= 0 or spent ~= 0 then
  redis.call('HINCRBY', day, 'reserved', -release)
  redis.call('HINCRBY', day, 'spent', spent)
  if org ~= '' then
    redis.call('HINCRBY', day, 'org:' .. org .. ':reserved', -release)
    redis.call('HINCRBY', day, 'org:' .. org .. ':spent', spent)
  end
end
local left, org_left = -1, -1
if cap >= 0 then
  left = cap - field('spent') - field('reserved')
end
if org ~= '' and org_cap >= 0 then
  org_left = org_cap - field('org:' .. org .. ':spent') - field('org:' .. org .. ':reserved')
end
local ok = 0
if amount > 0 and (cap < 0 or amount <= left) and (org_cap < 0 or org == '' or amount <= org_left) then
  ok = 1
  redis.call('HINCRBY', day, 'reserved', amount)
  if org ~= '' then
    redis.call('HINCRBY', day, 'org:' .. org .. ':reserved', amount)
  end
  if left >= 0 then left = left - amount end
  if org_left >= 0 then org_left = org_left - amount end
end
redis.call('EXPIRE', day, 3 * 86400)
return {ok, left, org_left}
