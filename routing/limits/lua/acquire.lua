-- KEYS and ARGV are flat lists: each limit contributes its keys and a fixed
-- number of arguments. Kinds: r = requests log, t = tokens log (zset + sum),
-- c = concurrency leases, b = budget counter.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local n = tonumber(ARGV[2])
local argi = 3
local keyi = 1
local specs = {}
for i = 1, n do
  local kind = ARGV[argi]
  local limit = tonumber(ARGV[argi + 1])
  local cost = tonumber(ARGV[argi + 2])
  local span = tonumber(ARGV[argi + 3])
  local init = ARGV[argi + 4]
  argi = argi + 5
  local spec = {kind = kind, limit = limit, cost = cost, span = span, key = KEYS[keyi]}
  keyi = keyi + 1
  if kind == 't' then spec.sum = KEYS[keyi]; keyi = keyi + 1 end
  local used = 0
  local reset = 0
  if kind == 'r' then
    redis.call('ZREMRANGEBYSCORE', spec.key, '-inf', now - span)
    used = redis.call('ZCARD', spec.key)
    local oldest = redis.call('ZRANGE', spec.key, 0, 0, 'WITHSCORES')
    if oldest[2] then reset = tonumber(oldest[2]) + span - now end
    if used + cost > limit and used >= 1 then
      local idx = used + cost - limit - 1
      local entry = redis.call('ZRANGE', spec.key, idx, idx, 'WITHSCORES')
      spec.retry = tonumber(entry[2]) + span - now
    end
  elseif kind == 't' then
    local expired = redis.call('ZRANGEBYSCORE', spec.key, '-inf', now - span)
    if #expired > 0 then
      local freed = 0
      for _, m in ipairs(expired) do
        freed = freed + tonumber(string.match(m, ':(%d+)$'))
      end
      redis.call('DECRBY', spec.sum, freed)
      redis.call('ZREMRANGEBYSCORE', spec.key, '-inf', now - span)
    end
    used = tonumber(redis.call('GET', spec.sum) or '0')
    local oldest = redis.call('ZRANGE', spec.key, 0, 0, 'WITHSCORES')
    if oldest[2] then reset = tonumber(oldest[2]) + span - now end
    if used + cost > limit then
      local need = used + cost - limit
      local freed = 0
      local entries = redis.call('ZRANGE', spec.key, 0, -1, 'WITHSCORES')
      spec.retry = span
      for j = 1, #entries, 2 do
        freed = freed + tonumber(string.match(entries[j], ':(%d+)$'))
        if freed >= need then spec.retry = tonumber(entries[j + 1]) + span - now; break end
      end
    end
  elseif kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', spec.key, '-inf', now)
    used = redis.call('ZCARD', spec.key)
    if used + cost > limit then spec.retry = 1000 end
  elseif kind == 'b' then
    local current = redis.call('GET', spec.key)
    if not current then
      if init == '' then return {-1, i} end
      redis.call('SET', spec.key, init, 'PX', span, 'NX')
      current = redis.call('GET', spec.key)
    end
    used = tonumber(current)
    reset = redis.call('PTTL', spec.key)
    if used + cost > limit then spec.retry = reset end
  end
  spec.used = used
  spec.reset = reset
  specs[i] = spec
  if spec.retry then
    return {0, i, math.max(spec.retry, 1), used, reset}
  end
end
local out = {1, 0, 0}
for i = 1, n do
  local spec = specs[i]
  if spec.kind == 'r' then
    redis.call('ZADD', spec.key, now, member)
    redis.call('PEXPIRE', spec.key, spec.span)
    if spec.reset == 0 then spec.reset = spec.span end
  elseif spec.kind == 't' then
    redis.call('ZADD', spec.key, now, member .. ':' .. spec.cost)
    redis.call('INCRBY', spec.sum, spec.cost)
    redis.call('PEXPIRE', spec.key, spec.span)
    redis.call('PEXPIRE', spec.sum, spec.span)
    if spec.reset == 0 then spec.reset = spec.span end
  elseif spec.kind == 'c' then
    redis.call('ZADD', spec.key, now + spec.span, member)
    redis.call('PEXPIRE', spec.key, spec.span)
  elseif spec.kind == 'b' then
    redis.call('INCRBY', spec.key, spec.cost)
  end
  table.insert(out, spec.limit - spec.used - spec.cost)
  table.insert(out, spec.reset)
end
return out
