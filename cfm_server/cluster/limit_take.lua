#!lua flags=allow-oom
-- Spend from a token bucket kept in Redis (a user's or an address's, cluster-wide).
-- KEYS[1] the bucket: hash t (tokens), s (ms of Redis's clock when t was right)
-- ARGV[1] rate (tokens per second)   ARGV[2] burst   ARGV[3] cost (0: only read it;
--         below 0: give tokens back, up to the burst)
-- ARGV[4] a node's own view of the bucket's tokens ('' if none): the bucket keeps the
--         lower of the two (a user's budget does not start afresh when its sessions
--         spread over a second node)
-- Returns {retry_ms, tokens}: retry_ms 0 if the cost was spent, else the milliseconds
-- until there are enough (nothing is spent then); tokens left, as a string. The same
-- arithmetic as limits.TokenBucket. The key expires once the bucket would be full.
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(held[1]) or burst
local stamp = tonumber(held[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate / 1000)
if ARGV[4] ~= '' then
  tokens = math.min(tokens, tonumber(ARGV[4]))
end
local retry = 0
if tokens >= cost then
  tokens = math.min(burst, tokens - cost)
else
  retry = math.max(1, math.ceil((cost - tokens) / rate * 1000))
end
local text = string.format('%.4f', tokens)
redis.call('HSET', KEYS[1], 't', text, 's', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {retry, text}
