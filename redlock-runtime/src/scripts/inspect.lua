-- What a key holds, for inspection: read only.
-- KEYS[1]: the key; KEYS[2]: its line of waiters; KEYS[3]: who holds a shared lock (see
-- shared.lua).
-- Returns {'none', waiting}, {'lock', waiting, remaining lease in ms, value} (see queue.lua),
-- {'shared', waiting, now in ms, {member, lease end, ...}, {token, about, ...}} (see shared.lua;
-- the kind's member among the others), or {'other', waiting, type}.
local waiting = redis.call('ZCARD', KEYS[2])
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then
    return {'none', waiting}
elseif kind == 'string' then
    return {'lock', waiting, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[1])}
elseif kind == 'zset' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    return {'shared', waiting, now, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'),
        redis.call('HGETALL', KEYS[3])}
end
return {'other', waiting, kind}
