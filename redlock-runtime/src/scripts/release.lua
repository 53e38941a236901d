-- Delete the lock only if the caller still holds it, and tell the waiters.
-- KEYS[1]: the lock key (also the channel of release notices); ARGV[1]: the holder's token.
-- Returns 1 when released, 0 when the token no longer holds the lock.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('PUBLISH', KEYS[1], 'released')
    return 1
end
return 0
