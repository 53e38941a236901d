-- Renew a holder's lease of a read-write lock or semaphore, only if it still holds it.
-- KEYS[1]: the key; ARGV[1]: the holder's member (its token, after a `w` for a writer);
-- ARGV[2]: the new lease in milliseconds.
-- Returns 1 when renewed, 0 when the member no longer holds the key (gone, or its lease ran out).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) < now then
    return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then
    redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
