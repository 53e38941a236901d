-- A shared lock (a read-write lock or a semaphore), after line.lua: the key is a sorted set of
-- its holders, each scored with the end of its own lease (server time, in milliseconds), plus
-- one member naming the kind, scored +inf: `#rw` for a read-write lock, `#<permits>` for a
-- semaphore. A writer's member is its token after a `w`; a reader's or a permit's is its token.
-- A holder whose lease ran out counts no longer, and is removed by the next script that looks.
-- Who each holder is lives in HOLDERS, a hash beside the key, `<counter>:holders:<key>` (on a
-- cluster KEYS[5]): token -> `<since> <fence> <name>`, as the exclusive lock's value says it.
-- KIND (the kind asked for) and MODE ('r' for a read share or a permit, 'w' for a writer) are set
-- by the script before this part.
local PERMITS = tonumber(string.match(KIND, '^#(%d+)$'))
local HOLDERS = KEYS[5] or (KEYS[2] .. ':holders:' .. KEYS[1])

-- The token of a holder's member.
local function token_of(member)
    if string.sub(member, 1, 1) == 'w' then
        return string.sub(member, 2)
    end
    return member
end

-- The member of `token` holding in `mode`.
local function member_of(token, mode)
    if mode == 'w' then
        return 'w' .. token
    end
    return token
end

-- How many hold the key now (the kind's member aside), once expired holders are gone.
local function holders(now)
    local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
    if #gone > 0 then
        redis.call('ZREM', KEYS[1], unpack(gone))
        for i, member in ipairs(gone) do
            gone[i] = token_of(member)
        end
        redis.call('HDEL', HOLDERS, unpack(gone))
    end
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

-- Makes `token`, named `name`, a holder in `mode` with a lease of `lease` ms from `now`: the
-- expiry of the key and of HOLDERS covers the longest lease. Returns its fencing token.
local function hold(token, mode, lease, now, name)
    local new = redis.call('ZADD', KEYS[1], 'NX', 'inf', KIND) == 1
    if new or redis.call('PTTL', KEYS[1]) < lease then
        redis.call('PEXPIRE', KEYS[1], lease)
    end
    redis.call('ZADD', KEYS[1], now + lease, member_of(token, mode))
    local fence = redis.call('INCR', KEYS[2])
    redis.call('HSET', HOLDERS, token, now .. ' ' .. fence .. ' ' .. name)
    if redis.call('PTTL', HOLDERS) < lease then
        redis.call('PEXPIRE', HOLDERS, lease)
    end
    return fence
end

-- Takes `member` out of the holders; the key (and HOLDERS) go with the last holder. Whether it
-- held.
local function unhold(member, now)
    if redis.call('ZREM', KEYS[1], member) == 0 then
        return false
    end
    redis.call('HDEL', HOLDERS, token_of(member))
    return true
end

-- Deletes the key and HOLDERS once nobody holds.
local function drop_if_empty(now)
    if holders(now) == 0 then
        redis.call('DEL', KEYS[1], HOLDERS)
    end
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
        local lease, mode, name, channel = string.match(rest, '^(%d+) ([rw]) (%S+) ?(.*)$')
        if lease and not admits(mode, now) then
            return
        end
        leave(first)
        if lease then
            local fence = hold(first, mode, tonumber(lease), now, name)
            if channel == '' then
                channel = KEYS[1]
            end
            redis.call(publish, channel, 'granted ' .. first .. ' ' .. fence)
            granted[#granted + 1] = first
            granted[#granted + 1] = fence
        end
    end
end
