-- The line of waiters of a key, at the top of the scripts that wait in it or hand over.
-- KEYS[1]: the key (also the channel of its notices); KEYS[2]: the fencing counter;
-- LINE: the waiters in order of arrival (a sorted set of tokens); PLACES: each waiter's entry,
-- "<expiry> <lease> ..." (a hash; for a shared lock, "<expiry> <lease> <mode> <holder> <channel>",
-- else "<expiry> <lease> <holder> <channel>"), the first two in milliseconds, the holder's name,
-- the last where its process hears of a hand-off (or nothing): a waiter keeps its place only while it renews it, by attempting
-- again, within its grace, before its expiry. Their names follow from the counter's and the
-- key's, `<counter>:queue:<key>` and `<counter>:waiters:<key>`; a cluster, which must be told
-- every key a script touches, passes them as KEYS[3] and KEYS[4] (with the key's slot tag), one
-- server need not be sent them with every release.
local LINE = KEYS[3] or (KEYS[2] .. ':queue:' .. KEYS[1])
local PLACES = KEYS[4] or (KEYS[2] .. ':waiters:' .. KEYS[1])

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function leave(token)
    if redis.call('ZREM', LINE, token) == 1 then
        redis.call('HDEL', PLACES, token)
    end
end

-- The longest waiter whose place has not expired, the rest of its entry after the expiry, and
-- the time it was looked at (ms); nil when nobody waits. Expired waiters met on the way leave
-- the line.
local function first_waiter()
    local now
    while true do
        local first = redis.call('ZRANGE', LINE, 0, 0)[1]
        if not first then
            return nil
        end
        local entry = redis.call('HGET', PLACES, first)
        if entry then
            now = now or now_ms()
            local expiry, rest = string.match(entry, '^(%d+) (.*)$')
            if expiry and tonumber(expiry) >= now then
                return first, rest, now
            end
        end
        leave(first)
    end
end

-- Takes a place in line for ARGV[1] (kept for `grace` ms), its entry's tail `rest`.
local function wait_in_line(grace, rest)
    -- Arrival in microseconds, as a string: a Lua number would print with 14 digits only.
    local t = redis.call('TIME')
    redis.call('ZADD', LINE, 'NX', t[1] .. string.format('%06d', tonumber(t[2])), ARGV[1])
    local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + grace
    redis.call('HSET', PLACES, ARGV[1], string.format('%d ', expiry) .. rest)
    -- The line itself goes when every waiter stopped renewing its place.
    for _, key in ipairs({LINE, PLACES}) do
        if redis.call('PTTL', key) < grace then
            redis.call('PEXPIRE', key, grace)
        end
    end
end
