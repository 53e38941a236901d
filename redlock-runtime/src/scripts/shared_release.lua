-- Give back a share of a read-write lock or a permit of a semaphore, and hand the key to the
-- longest waiters it now admits; a caller that does not hold it leaves the line (a waiter
-- giving up).
-- KEYS[1]: the key; KEYS[2]: the fencing counter; on a cluster KEYS[3] and KEYS[4]: its line,
-- KEYS[5]: who holds it.
-- ARGV[1]: the holder's token; ARGV[2]: the kind (`#rw`, `#<permits>`); ARGV[3]: the mode ('r'
-- or 'w'); ARGV[4]: the command that publishes notices; ARGV[5]: '1' to hand over to waiters in
-- line, '0' on a Redlock master (no hand-offs); ARGV[6]: '1' to publish `released` even when
-- this server does not hold the token (a Redlock master).
-- Returns 0 when the token no longer held the key here, else {told, token, fence, ...}: told is 1
-- when `released` was published on the key's channel (nobody left in line), then each waiter
-- handed a share, with its fencing token.
local KIND, MODE = ARGV[2], ARGV[3]
--[[line]]
--[[shared]]
local now = now_ms()
if not unhold(member_of(ARGV[1], MODE), now) then
    leave(ARGV[1])
    if ARGV[6] == '1' then
        redis.call(ARGV[4], KEYS[1], 'released')
    end
    return 0
end
local reply = {0}
if ARGV[5] == '1' then
    grant(ARGV[4], now, reply)
end
drop_if_empty(now)
if redis.call('ZCARD', LINE) == 0 then
    redis.call(ARGV[4], KEYS[1], 'released')
    reply[1] = 1
end
return reply
