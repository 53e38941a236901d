-- The exclusive lock's value and its use of its line (after line.lua).
-- The value is `<token>|<since> <fence> <holder>`: the holder's token, then who holds it
-- (when it took the lock, in milliseconds since the Unix epoch; its fencing token, or `-` until
-- its first renewal tells it; its name). While anyone waits in line, the token is followed by
-- `+` (`<token>+|...`), so that a release with nobody in line costs what it cost before there
-- were lines.

-- The holder's token (without the mark), whether the value is marked, and what follows `|`.
local function holder_of(value)
    if not value then
        return nil, false, ''
    end
    local bar = string.find(value, '|', 1, true)
    local head, about = value, ''
    if bar then
        head, about = string.sub(value, 1, bar - 1), string.sub(value, bar + 1)
    end
    if string.sub(head, -1) == '+' then
        return string.sub(head, 1, -2), true, about
    end
    return head, false, about
end

-- Who holds the lock since `since`, with fencing token `fence`, named `name`.
local function about(since, fence, name)
    return since .. ' ' .. fence .. ' ' .. name
end

-- Whether `value` is a holder's token (48 lowercase hex digits), not some other string that
-- happens to sit at the lock's key, which is never touched.
local function is_token(value)
    return string.len(value) == 48 and not string.find(value, '[^0-9a-f]')
end

-- The lock's value for `token`, held as `held` (see `about`): marked when anyone waits in line.
local function value_for(token, held)
    if redis.call('ZCARD', LINE) > 0 then
        return token .. '+|' .. held
    end
    return token .. '|' .. held
end

-- Hands the lock (free, or the releaser's: it is overwritten) to the longest waiter whose place
-- has not expired, with the next fencing token, and tells it with `granted <token> <fence>`
-- (published with `publish`) on the channel its place names, its own process's, else on the
-- lock's. The lease is the waiter's own: the hand-off costs no further round trip.
-- Returns the new holder's token and fencing token, or false when nobody waits.
local function hand_off(publish)
    local first, rest, now = first_waiter()
    if not first then
        return false
    end
    leave(first)
    local lease, name, channel = string.match(rest, '^(%d+) (%S+) ?(.*)$')
    local fence = redis.call('INCR', KEYS[2])
    redis.call('SET', KEYS[1], value_for(first, about(now, fence, name)), 'PX', lease)
    if channel == '' then
        channel = KEYS[1]
    end
    redis.call(publish, channel, 'granted ' .. first .. ' ' .. fence)
    return {first, fence}
end
