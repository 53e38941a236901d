-- Administrative release: remove every holder of the key, whoever they are, and tell the
-- waiters, who then take it in their order (the next attempt of the longest waiter finds the
-- key free and hands it on). Breaks mutual exclusion for the holders it removes.
-- KEYS[1]: the key; KEYS[2]: who holds a shared lock; ARGV[1]: the command that publishes
-- notices.
-- Returns 1 when something was removed, 0 when the key held nothing.
local removed = redis.call('DEL', KEYS[1], KEYS[2])
if removed > 0 then
    redis.call(ARGV[1], KEYS[1], 'released')
    return 1
end
return 0
