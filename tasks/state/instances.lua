-- Instance events (tasks/state/instances.py documents the key).

--! script record
-- The event (connected 1/0, err, at), unless the stored one is newer; a stored time more than
-- FUTURE_SLACK after now (epoch s) is no time at all. Returns 1 when kept.
local stored = tonumber(redis.call('HGET', instance, 'at') or '0') or 0
if stored ~= stored or stored > tonumber(now_s) + FUTURE_SLACK then stored = 0 end  -- NaN, or no time
local newest = tonumber(at) >= stored
if newest then
  redis.call('HSET', instance, 'connected', connected, 'error', err, 'at', at)
end
redis.call('EXPIRE', instance, ttl)
return newest and 1 or 0
