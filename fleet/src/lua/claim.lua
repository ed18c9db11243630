-- Claims a question (lead, provider) unless it is answered or held.
-- KEYS: [1] the answer, [2] the claim (same hash tag: the lead).
-- ARGV: [1] this worker, [2] how long the claim holds, ms.
-- Returns {1, ''} claimed | {2, answer} answered | {0, ''} held by another.
local answer = redis.call('GET', KEYS[1])
if answer then
  return {2, answer}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, ''}
end
return {0, ''}
