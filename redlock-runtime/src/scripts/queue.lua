-- The exclusive lock's use of its line (after line.lua).
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

-- Hands the lock (free, or the releaser's: it is overwritten) to the longest waiter whose place
-- has not expired, with the next fencing token, and tells it with `granted <token> <fence>`
-- (published with `publish`) on the channel its place names, its own process's, else on the
-- lock's. The lease is the waiter's own: the hand-off costs no further round trip.
-- Returns the new holder's token and fencing token, or false when nobody waits.
local function hand_off(publish)
    local first, rest = first_waiter()
    if not first then
        return false
    end
    leave(first)
    local lease, channel = string.match(rest, '^(%d+) ?(.*)$')
    redis.call('SET', KEYS[1], value_for(first), 'PX', lease)
    local fence = redis.call('INCR', KEYS[2])
    if channel == '' then
        channel = KEYS[1]
    end
    redis.call(publish, channel, 'granted ' .. first .. ' ' .. fence)
    return {first, fence}
end
