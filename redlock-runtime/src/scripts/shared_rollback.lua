-- Undo a failed Redlock attempt on a read-write lock on one master: remove the member, silently
-- (see rollback.lua), and the key once nobody holds it.
-- KEYS[1]: the key; KEYS[2]: who holds it (a Redlock master is no cluster: `<counter>:holders:<key>`);
-- ARGV[1]: the caller's member (its token, after a `w` for a writer); ARGV[2]: its token.
-- Returns 1 when removed, 0 when this master does not hold it.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
    return 0
end
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('ZCARD', KEYS[1]) <= 1 then
    redis.call('DEL', KEYS[1], KEYS[2])
end
return 1
