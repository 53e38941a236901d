-- Delete the lock only if the caller still holds it, and tell the waiters.
-- KEYS[1]: the lock key (also the channel of release notices); ARGV[1]: the holder's token;
-- ARGV[2] (optional): the command that publishes the notice, PUBLISH by default, SPUBLISH on a
-- cluster (the key's shard channel); ARGV[3] (optional, any value): publish even when this server
-- does not hold the token. A Redlock master is told so: waiters listen on one master only, which need not be one
-- where the holder's quorum was taken, so every master announces the release.
-- Returns 1 when released, 0 when the token no longer holds the lock here.
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    released = 1
end
if released == 1 or ARGV[3] then
    redis.call(ARGV[2] or 'PUBLISH', KEYS[1], 'released')
end
return released
