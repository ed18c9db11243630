-- Reserves or settles spend for one UTC day. KEYS[1]: the day's hash.
-- (`0 - release`, not `-release`: Lua writes -0 for a release of 0, which
-- HINCRBY refuses as no integer.)
-- ARGV: [1] µUSD wanted, [2] µUSD reserved to release, [3] µUSD spent,
--       [4] day cap (-1: none), [5] organization ('' none),
--       [6] organization's day cap (-1: none), [7] least µUSD worth granting,
--       [8] the worker's spend tag ('' none: its reservations and spend are
--       also kept under `w:TAG:held` / `w:TAG:spent`, for settle.lua),
--       then pairs (organization, µUSD of [3] that was its spend).
-- Grants min(wanted, left) when that is at least [7], else nothing.
-- Returns {granted, left today (-1: no cap), left for the organization (-1)}.
local want, release, spent = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, org, org_cap, least = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local tag = ARGV[8]
local day = KEYS[1]
local function field(name)
  return tonumber(redis.call('HGET', day, name) or '0')
end
if release ~= 0 or spent ~= 0 then
  redis.call('HINCRBY', day, 'reserved', 0 - release)
  redis.call('HINCRBY', day, 'spent', spent)
  if org ~= '' then
    redis.call('HINCRBY', day, 'org:' .. org .. ':reserved', 0 - release)
    redis.call('HINCRBY', day, 'org:' .. org .. ':spent', spent)
  end
end
if tag ~= '' and (release ~= 0 or spent ~= 0) then
  redis.call('HINCRBY', day, 'w:' .. tag .. ':held', 0 - release)
  redis.call('HINCRBY', day, 'w:' .. tag .. ':spent', spent)
end
for i = 9, #ARGV, 2 do
  redis.call('HINCRBY', day, 'org:' .. ARGV[i] .. ':spent', tonumber(ARGV[i + 1]))
end
local left, org_left = -1, -1
local grant = want
if cap >= 0 then
  left = cap - field('spent') - field('reserved')
  grant = math.min(grant, left)
end
if org ~= '' and org_cap >= 0 then
  org_left = org_cap - field('org:' .. org .. ':spent') - field('org:' .. org .. ':reserved')
  grant = math.min(grant, org_left)
end
if want <= 0 or grant < least then
  grant = 0
end
if grant > 0 then
  redis.call('HINCRBY', day, 'reserved', grant)
  if tag ~= '' then
    redis.call('HINCRBY', day, 'w:' .. tag .. ':held', grant)
  end
  if org ~= '' then
    redis.call('HINCRBY', day, 'org:' .. org .. ':reserved', grant)
  end
  if left >= 0 then left = left - grant end
  if org_left >= 0 then org_left = org_left - grant end
end
redis.call('EXPIRE', day, 3 * 86400)
return {grant, left, org_left}
