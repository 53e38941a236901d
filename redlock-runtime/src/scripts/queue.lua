-- The line of waiters of a lock, at the top of the acquire and release scripts.
-- KEYS[1]: the lock key (also the channel of its notices); KEYS[2]: the fencing counter;
-- KEYS[3]: the waiters in order of arrival (a sorted set of tokens); KEYS[4]: each waiter's
-- entry, "<expiry> <lease> <grace>" in milliseconds (a hash): a waiter keeps its place only
-- while it renews it, by attempting again, within its grace, before its expiry.

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function leave(token)
    if redis.call('ZREM', KEYS[3], token) == 1 then
        redis.call('HDEL', KEYS[4], token)
    end
end

-- Hands the free lock to the longest waiter whose place has not expired, with the next fencing
-- token, and tells it with `granted <token> <fence>` on the lock's channel (published with
-- `publish`). Expired waiters met on the way leave the line. The first lease is the waiter's
-- grace at most: a waiter that died within its grace holds the lock no longer than that; a
-- live one extends it to its full lease at once.
-- Returns the new holder's token and fencing token, or false when nobody waits.
local function hand_off(publish)
    local now
    while true do
        local first = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
        if not first then
            return false
        end
        local entry = redis.call('HGET', KEYS[4], first)
        leave(first)
        if entry then
            now = now or now_ms()
            local expiry, lease, grace = string.match(entry, '^(%d+) (%d+) (%d+)$')
            if expiry and tonumber(expiry) >= now then
                redis.call('SET', KEYS[1], first, 'PX', math.min(tonumber(lease), tonumber(grace)))
                local fence = redis.call('INCR', KEYS[2])
                redis.call(publish, KEYS[1], 'granted ' .. first .. ' ' .. fence)
                return {first, fence}
            end
        end
    end
end
