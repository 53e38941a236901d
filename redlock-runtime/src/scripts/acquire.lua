-- Take the lock if it is free.
-- KEYS[1]: the lock key; KEYS[2]: the fencing counter.
-- ARGV[1]: the holder's token; ARGV[2]: the lease in milliseconds; ARGV[3] (optional): the
-- caller's task tag, which ends the tokens of plain guards taken by that task.
-- Returns {1, fencing token} when taken, {0, remaining lease in ms} when busy
-- (-1 when the key has no expiry), {3, remaining lease} when busy with a token that ends with
-- ARGV[3], {2, type} when the key is not a lock at all.
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
if ARGV[3] and string.sub(redis.call('GET', KEYS[1]), -string.len(ARGV[3])) == ARGV[3] then
    return {3, redis.call('PTTL', KEYS[1])}
end
return {0, redis.call('PTTL', KEYS[1])}
