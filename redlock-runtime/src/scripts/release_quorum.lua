-- Redlock release on one of the masters: delete the lock only if the caller still holds it here,
-- and tell the waiters in any case.
-- KEYS[1]: the lock key (also the channel of release notices); ARGV[1]: the holder's token.
-- Returns 1 when released here, 0 when this master does not hold the caller's token.
-- Waiters listen on one master only, which need not be one where the holder's quorum was taken:
-- every master announces the release, so the listening one does too.
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    released = 1
end
redis.call('PUBLISH', KEYS[1], 'released')
return released
