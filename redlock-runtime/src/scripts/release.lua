-- Release the lock if the caller still holds it: hand it to the longest waiter still in line,
-- or delete it and tell the waiters. A caller that does not hold it leaves the line (a waiter
-- giving up).
-- (With line.lua and queue.lua in place of the line that names them: KEYS[1] the lock, KEYS[2]
-- the fencing counter, and on a cluster KEYS[3] and KEYS[4] its line.)
-- ARGV[1]: the holder's token; ARGV[2] (optional): the command that publishes notices, PUBLISH
-- by default, SPUBLISH on a cluster (the key's shard channel); ARGV[3] (optional, any value):
-- publish `released` even when this server does not hold the token. A Redlock master is told
-- so: waiters listen on one master only, which need not be one where the holder's quorum was
-- taken, so every master announces the release.
-- Returns {2, the new holder's token, its fencing token} when handed to a waiter, 1 when
-- released, 0 when the token no longer holds the lock here.
local publish = ARGV[2] or 'PUBLISH'
local value = redis.call('GET', KEYS[1])
-- Nobody in line (the value is not marked): delete and tell, as simply as can be.
-- (`|`, byte 124, right after the 48-digit token; compared without making new strings.)
if value and string.byte(value, 49) == 124 and string.find(value, ARGV[1], 1, true) == 1 then
    redis.call('DEL', KEYS[1])
    redis.call(publish, KEYS[1], 'released')
    return 1
end
--[[queue]]
local holder, marked = holder_of(value)
if holder ~= ARGV[1] or not marked then
    leave(ARGV[1])
    if ARGV[3] then
        redis.call(publish, KEYS[1], 'released')
    end
    return 0
end
local to = hand_off(publish)
if to then
    return {2, to[1], to[2]}
end
redis.call('DEL', KEYS[1])
redis.call(publish, KEYS[1], 'released')
return 1
