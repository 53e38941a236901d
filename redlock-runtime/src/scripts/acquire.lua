-- Take the lock if it is free and nobody waits for it; otherwise wait in line.
-- (With line.lua and queue.lua in place of the line below: KEYS[1] the lock, KEYS[2] the
-- fencing counter, and on a cluster KEYS[3] and KEYS[4] its line.)
--[[queue]]
-- ARGV[1]: the holder's token; ARGV[2]: the lease in milliseconds; ARGV[3]: the caller's task
-- tag, which ends the tokens of plain guards taken by that task, or '' ; ARGV[4]: how long, in
-- milliseconds, the caller keeps its place in line without attempting again ('0': it does not
-- wait in line); ARGV[5]: the command that publishes notices (PUBLISH or SPUBLISH); ARGV[6]:
-- the channel on which the caller's process hears of a hand-off to it, or ''; ARGV[7]: the
-- holder's name.
-- Returns {1, fencing token} when taken, {0, remaining lease in ms} when busy (-1 when the key
-- has no expiry), {3, remaining lease} when busy with a token that ends with ARGV[3], {2, type}
-- when the key is not a lock at all (`#...` for a read-write lock or semaphore: see shared.lua).

-- Taken: out of line, with the next fencing token, held since `since` (the value keeps its
-- expiry unless `lease` is given).
local function taken(since, lease)
    leave(ARGV[1])
    local fence = redis.call('INCR', KEYS[2])
    local value = value_for(ARGV[1], about(since, fence, ARGV[7]))
    if lease then
        redis.call('SET', KEYS[1], value, 'PX', lease)
    else
        redis.call('SET', KEYS[1], value, 'KEEPTTL')
    end
    return {1, fence}
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then
    -- Free: it goes to the longest waiter (the holder expired without a release), else to us.
    local first = redis.call('ZRANGE', LINE, 0, 0)[1]
    if not first or first == ARGV[1] or not hand_off(ARGV[5]) then
        return taken(now_ms(), ARGV[2])
    end
elseif kind == 'zset' then
    local meta = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
    if meta and string.sub(meta, 1, 1) == '#' then
        return {2, meta}
    end
    return {2, kind}
elseif kind ~= 'string' then
    return {2, kind}
end
local holder, marked, held = holder_of(redis.call('GET', KEYS[1]))
-- Our own token: a retry of an attempt whose reply was lost, or a hand-off not heard of yet.
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return taken(string.match(held, '^(%d+)') or now_ms())
end
if ARGV[3] ~= '' and string.sub(holder, -string.len(ARGV[3])) == ARGV[3] then
    return {3, redis.call('PTTL', KEYS[1])}
end
local grace = tonumber(ARGV[4])
if grace > 0 then
    wait_in_line(grace, ARGV[2] .. ' ' .. ARGV[7] .. ' ' .. ARGV[6])
    if not marked and is_token(holder) then
        redis.call('SET', KEYS[1], holder .. '+|' .. held, 'KEEPTTL')
    end
end
return {0, redis.call('PTTL', KEYS[1])}
