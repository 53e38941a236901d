-- Undo a failed Redlock attempt on one master: compare-and-delete, silently.
-- KEYS[1]: the lock key; ARGV[1]: the caller's token (a Redlock master keeps no line, so its
-- value is never marked).
-- Returns 1 when deleted, 0 when this master does not hold the caller's token.
-- No release notice: waiters that are woken by another waiter's rollback would try, fail, roll
-- back and wake the next one, for as long as the real holder keeps the lock.
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 49) == ARGV[1] .. '|' then
    return redis.call('DEL', KEYS[1])
end
return 0
