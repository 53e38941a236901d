-- The line of waiters of a lock, at the top of the acquire and release scripts.
-- KEYS[1]: the lock key (also the channel of its notices); KEYS[2]: the fencing counter;
-- LINE: the waiters in order of arrival (a sorted set of tokens); PLACES: each waiter's entry,
-- "<expiry> <lease> <channel>" (a hash), the first two in milliseconds, the last where its
-- process hears of a hand-off (or nothing): a waiter keeps its place only while it renews it,
-- by attempting again, within its grace, before its expiry. Their names follow from
-- the counter's and the lock's, `<counter>:queue:<lock>` and `<counter>:waiters:<lock>`; a
-- cluster, which must be told every key a script touches, passes them as KEYS[3] and KEYS[4]
-- (with the lock's slot tag), one server need not be sent them with every release.
local LINE = KEYS[3] or (KEYS[2] .. ':queue:' .. KEYS[1])
local PLACES = KEYS[4] or (KEYS[2] .. ':waiters:' .. KEYS[1])
-- While anyone waits in line, the lock's value is the holder's token followed by `+`, so that a
-- release with nobody in line costs what it cost before there were lines.

-- The holder's token (without the mark), and whether the value is marked.
local function holder_of(value)
    if value and string.sub(value, -1) == '+' then
        return string.sub(value, 1, -2), true
    end
    return value, false
end

-- Whether `value` is a holder's token (48 lowercase hex digits), not some other string that
-- happens to sit at the lock's key, which is never touched.
local function is_token(value)
    return string.len(value) == 48 and not string.find(value, '[^0-9a-f]')
end

-- The lock's value for `token`: marked when anyone waits in line.
local function value_for(token)
    if redis.call('ZCARD', LINE) > 0 then
        return token .. '+'
    end
    return token
end

-- Marks the lock's value when anyone waits in line (keeping its expiry).
local function mark(token)
    if redis.call('ZCARD', LINE) > 0 then
        redis.call('SET', KEYS[1], token .. '+', 'KEEPTTL')
    end
end

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function leave(token)
    if redis.call('ZREM', LINE, token) == 1 then
        redis.call('HDEL', PLACES, token)
    end
end

-- Hands the lock (free, or the releaser's: it is overwritten) to the longest waiter whose place
-- has not expired, with the next fencing
-- token, and tells it with `granted <token> <fence>` (published with `publish`) on the channel
-- its place names, its own process's, else on the lock's. Expired waiters met on the way leave
-- the line. The lease is the waiter's own: the hand-off costs no further round trip.
-- Returns the new holder's token and fencing token, or false when nobody waits.
local function hand_off(publish)
    local now
    while true do
        local first = redis.call('ZRANGE', LINE, 0, 0)[1]
        if not first then
            return false
        end
        local entry = redis.call('HGET', PLACES, first)
        redis.call('ZREM', LINE, first)
        if entry then
            redis.call('HDEL', PLACES, first)
            now = now or now_ms()
            local expiry, lease, channel = string.match(entry, '^(%d+) (%d+) ?(.*)$')
            if expiry and tonumber(expiry) >= now then
                redis.call('SET', KEYS[1], value_for(first), 'PX', lease)
                local fence = redis.call('INCR', KEYS[2])
                if channel == '' then
                    channel = KEYS[1]
                end
                redis.call(publish, channel, 'granted ' .. first .. ' ' .. fence)
                return {first, fence}
            end
        end
    end
end
