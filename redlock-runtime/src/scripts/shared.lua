-- A shared lock (a read-write lock or a semaphore), after line.lua: the key is a sorted set of
-- its holders, each scored with the end of its own lease (server time, in milliseconds), plus
-- one member naming the kind, scored +inf: `#rw` for a read-write lock, `#<permits>` for a
-- semaphore. A writer's member is its token after a `w`; a reader's or a permit's is its token.
-- A holder whose lease ran out counts no longer, and is removed by the next script that looks.
-- KIND (the kind asked for) and MODE ('r' for a read share or a permit, 'w' for a writer) are set
-- by the script before this part.
local PERMITS = tonumber(string.match(KIND, '^#(%d+)$'))

-- The member of `token` holding in `mode`.
local function member_of(token, mode)
    if mode == 'w' then
        return 'w' .. token
    end
    return token
end

-- How many hold the key now (the kind's member aside), once expired holders are gone.
local function holders(now)
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
    local n = redis.call('ZCARD', KEYS[1])
    if n > 0 then
        return n - 1
    end
    return 0
end

-- Whether a holder in `mode` may join those holding now: a semaphore has a free permit; a
-- reader finds no writer; a writer finds nobody.
local function admits(mode, now)
    local n = holders(now)
    if PERMITS then
        return n < PERMITS
    end
    if n == 0 then
        return true
    end
    if mode == 'w' then
        return false
    end
    -- A writer holds alone, so one holder tells.
    return string.sub(redis.call('ZRANGE', KEYS[1], 0, 0)[1], 1, 1) ~= 'w'
end

-- Makes `token` a holder in `mode` with a lease of `lease` ms from `now`: the key's own expiry
-- covers the longest lease. Returns its fencing token.
local function hold(token, mode, lease, now)
    if redis.call('ZADD', KEYS[1], 'NX', 'inf', KIND) == 1 then
        redis.call('PEXPIRE', KEYS[1], lease)
    elseif redis.call('PTTL', KEYS[1]) < lease then
        redis.call('PEXPIRE', KEYS[1], lease)
    end
    redis.call('ZADD', KEYS[1], now + lease, member_of(token, mode))
    return redis.call('INCR', KEYS[2])
end

-- Hands the key to the longest waiters for as long as it admits them, in their order (so
-- nobody passes a writer that waits), each with the next fencing token, and tells each with
-- `granted <token> <fence>` (published with `publish`) on the channel its place names, else on
-- the key's. Appends each one's token and fencing token to `granted`.
local function grant(publish, now, granted)
    while true do
        local first, rest = first_waiter()
        if not first then
            return
        end
        local lease, mode, channel = string.match(rest, '^(%d+) ([rw]) ?(.*)$')
        if lease and not admits(mode, now) then
            return
        end
        leave(first)
        if lease then
            local fence = hold(first, mode, tonumber(lease), now)
            if channel == '' then
                channel = KEYS[1]
            end
            redis.call(publish, channel, 'granted ' .. first .. ' ' .. fence)
            granted[#granted + 1] = first
            granted[#granted + 1] = fence
        end
    end
end
