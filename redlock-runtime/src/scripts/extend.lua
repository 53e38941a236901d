-- Renew the lease only if the caller still holds the lock.
-- KEYS[1]: the lock key; ARGV[1]: the holder's token; ARGV[2]: the new lease in milliseconds.
-- Returns 1 when renewed, 0 when the token no longer holds the lock.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
