-- Replace reservations with what was used; release leases; renew leases.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local n = tonumber(ARGV[2])
local argi = 3
local keyi = 1
for i = 1, n do
  local kind = ARGV[argi]
  local reserved = tonumber(ARGV[argi + 1])
  local actual = tonumber(ARGV[argi + 2])
  local span = tonumber(ARGV[argi + 3])
  argi = argi + 4
  local key = KEYS[keyi]
  keyi = keyi + 1
  if kind == 't' then
    local sum = KEYS[keyi]
    keyi = keyi + 1
    local old = member .. ':' .. reserved
    local score = redis.call('ZSCORE', key, old)
    if score then
      redis.call('ZREM', key, old)
      if actual > 0 then redis.call('ZADD', key, score, member .. ':' .. actual) end
      redis.call('INCRBY', sum, actual - reserved)
    end
  elseif kind == 'c' then
    if actual < 0 then
      -- The key must outlive the renewed lease, the latest of them all.
      if redis.call('ZADD', key, 'XX', 'CH', now + span, member) == 1 then
        redis.call('PEXPIRE', key, span)
      end
    else
      redis.call('ZREM', key, member)
    end
  elseif kind == 'b' then
    if redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, actual - reserved) end
  end
end
return 1
