-- Read, never write: what each limit has used now and ms until it frees.
-- KEYS: one per limit (tokens logs: the log only). ARGV: n, then per limit
-- kind and span. Returns per limit {used, reset_ms}; a budget whose counter
-- is missing answers used = -1 (the caller reads the record instead).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local kind = ARGV[2 * i]
  local span = tonumber(ARGV[2 * i + 1])
  local key = KEYS[i]
  local used = 0
  local reset = 0
  if kind == 'r' or kind == 't' then
    local live = redis.call('ZRANGEBYSCORE', key, '(' .. (now - span), '+inf', 'WITHSCORES')
    for j = 1, #live, 2 do
      if kind == 'r' then
        used = used + 1
      else
        used = used + tonumber(string.match(live[j], ':(%d+)$'))
      end
    end
    if live[2] then reset = tonumber(live[2]) + span - now end
  elseif kind == 'c' then
    used = redis.call('ZCOUNT', key, '(' .. now, '+inf')
  elseif kind == 'b' then
    local current = redis.call('GET', key)
    if current then
      used = tonumber(current)
      reset = redis.call('PTTL', key)
    else
      used = -1
    end
  end
  table.insert(out, used)
  table.insert(out, reset)
end
return out
