-- Redis Cluster release: compare-and-delete that publishes the release notice on the key's
-- shard channel (SPUBLISH), so it reaches the waiters subscribed on the slot's master only.
-- KEYS[1]: the lock key (also the shard channel); ARGV[1]: the holder's token.
-- Returns 1 when released, 0 when the token no longer holds the lock.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('SPUBLISH', KEYS[1], 'released')
    return 1
end
return 0
