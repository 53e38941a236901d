-- Take a share of a read-write lock, or a permit of a semaphore, if the key admits it and
-- nobody waits before us; otherwise wait in line.
-- KEYS[1]: the key; KEYS[2]: the fencing counter; on a cluster KEYS[3] and KEYS[4]: its line,
-- KEYS[5]: who holds it.
-- ARGV[1]: the holder's token; ARGV[2]: the lease in milliseconds; ARGV[3]: the caller's task
-- tag, which ends the tokens of plain guards taken by that task, or ''; ARGV[4]: how long, in
-- milliseconds, the caller keeps its place in line without attempting again ('0': no place);
-- ARGV[5]: the command that publishes notices; ARGV[6]: the channel on which the caller's
-- process hears of a hand-off to it, or ''; ARGV[7]: the kind (`#rw`, `#<permits>`); ARGV[8]:
-- the mode ('r' or 'w'); ARGV[9]: '1' when the line is kept in order with hand-offs, '0' on a
-- Redlock master, where a place only keeps readers out while a writer waits; ARGV[10]: the
-- holder's name.
-- Returns {1, fencing token} when taken, {0, ms until the first holder's lease ends} when busy,
-- {3, that} when busy while a plain guard of the caller's task holds the key, {2, what the key
-- is} when it is another kind of lock (`#rw`, `#<permits>`, `lock`) or not a lock at all.
local KIND, MODE = ARGV[7], ARGV[8]
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'zset' then
    local meta = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
    if meta ~= KIND then
        if meta and string.sub(meta, 1, 1) == '#' then
            return {2, meta}
        end
        return {2, kind}
    end
elseif kind == 'string' then
    local value = redis.call('GET', KEYS[1])
    if string.find(value, '^[0-9a-f]+%+?|') and string.find(value, '|', 1, true) >= 49 then
        return {2, 'lock'}
    end
    return {2, kind}
elseif kind ~= 'none' then
    return {2, kind}
end
--[[line]]
--[[shared]]
local now = now_ms()
local lease = tonumber(ARGV[2])
local member = member_of(ARGV[1], MODE)
-- Our own share: a retry of an attempt whose reply was lost, or a hand-off not heard of yet.
local score = redis.call('ZSCORE', KEYS[1], member)
if score and tonumber(score) >= now then
    leave(ARGV[1])
    return {1, hold(ARGV[1], MODE, lease, now, ARGV[10])}
end
local ordered = ARGV[9] == '1'
if ordered then
    -- Holders that vanished may have left room for those in line.
    local granted = {}
    grant(ARGV[5], now, granted)
    for i = 1, #granted, 2 do
        if granted[i] == ARGV[1] then
            return {1, granted[i + 1]}
        end
    end
end
local first = first_waiter()
if (not first or (not ordered and MODE == 'w')) and admits(MODE, now) then
    leave(ARGV[1])
    return {1, hold(ARGV[1], MODE, lease, now, ARGV[10])}
end
local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local left = -1
if soonest[2] and soonest[2] ~= 'inf' then
    left = math.max(tonumber(soonest[2]) - now, 0)
end
if ARGV[3] ~= '' then
    local tag = string.len(ARGV[3])
    for _, holder in ipairs(redis.call('ZRANGE', KEYS[1], 0, -2)) do
        if string.sub(holder, -tag) == ARGV[3] then
            return {3, left}
        end
    end
end
local grace = tonumber(ARGV[4])
if grace > 0 and (ordered or MODE == 'w') then
    wait_in_line(grace, ARGV[2] .. ' ' .. MODE .. ' ' .. ARGV[10] .. ' ' .. ARGV[6])
end
return {0, left}
