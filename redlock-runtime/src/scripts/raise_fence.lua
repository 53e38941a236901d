-- Redlock fencing: raise this master's counter to the token the holder was given, so that any
-- later quorum, which shares a master with this one, hands out a higher token.
-- KEYS[1]: the fencing counter; ARGV[1]: the token.
-- Returns the counter's value afterwards.
local token = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if current < token then
    redis.call('SET', KEYS[1], ARGV[1])
    return token
end
return current
