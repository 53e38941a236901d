-- Take the lock if it is free.
-- KEYS[1]: the lock key; KEYS[2]: the fencing counter.
-- ARGV[1]: the holder's token; ARGV[2]: the lease in milliseconds.
-- Returns {1, fencing token} when taken, {0, remaining lease in ms} when busy
-- (-1 when the key has no expiry), {2, type} when the key is not a lock at all.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {1, redis.call('INCR', KEYS[2])}
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'string' then
    return {2, kind}
end
-- A retry of an attempt whose reply was lost: the caller already holds the lock.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
