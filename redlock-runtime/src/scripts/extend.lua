-- Renew the lease only if the caller still holds the lock.
-- KEYS[1]: the lock key; ARGV[1]: the holder's token; ARGV[2]: the new lease in milliseconds.
-- Returns 1 when renewed, 0 when the token no longer holds the lock.
-- (A value marked with `+` has waiters in line; see queue.lua.)
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] or value == ARGV[1] .. '+' then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
