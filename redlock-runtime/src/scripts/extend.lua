-- Renew the lease only if the caller still holds the lock.
-- KEYS[1]: the lock key; ARGV[1]: the holder's token; ARGV[2]: the new lease in milliseconds;
-- ARGV[3] (optional): the holder's fencing token, written into the value where it is not yet
-- (a lock taken by the bare `SET NX` learns its fencing token only from the reply).
-- Returns 1 when renewed, 0 when the token no longer holds the lock.
-- (The value is `<token>[+]|<since> <fence> <holder>`; see queue.lua.)
local value = redis.call('GET', KEYS[1])
if not value then
    return 0
end
local head = string.sub(value, 1, 49)
local at = 50
if head ~= ARGV[1] .. '|' then
    if string.sub(value, 1, 50) ~= ARGV[1] .. '+|' then
        return 0
    end
    at = 51
end
if ARGV[3] then
    local since, name = string.match(string.sub(value, at), '^(%d+) %- (.*)$')
    if since then
        redis.call('SET', KEYS[1], string.sub(value, 1, at - 1) .. since .. ' ' .. ARGV[3] .. ' ' .. name, 'KEEPTTL')
    end
end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
