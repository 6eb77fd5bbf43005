-- The marker that only a loss of data removes (worker/redis_marker.py).

--! script watch
-- Renews the marker (now_s: the worker's clock, epoch s; run_id: the server's; starting = '1'
-- at a worker's start-up). Returns 'new' (written where none was), 'kept', 'restarted' (run_id
-- changed, data kept) or 'lost' (gone since the last look: a new marker says when). A key of
-- another type, or a hash without 'since', is no marker this file wrote: removed before anything
-- else is written, it is a marker gone.
local kind = redis.call('TYPE', marker)['ok']
if kind ~= 'none' and (kind ~= 'hash' or redis.call('HEXISTS', marker, 'since') == 0) then
  redis.call('DEL', marker)
end
if redis.call('EXPIRE', marker, ttl) == 0 then
  redis.call('HSET', marker, 'since', now_s, 'run_id', run_id)
  local outcome = 'new'
  if starting ~= '1' then
    redis.call('HSET', marker, 'lost_at', now_s)
    outcome = 'lost'
  end
  redis.call('EXPIRE', marker, ttl)
  return outcome
end
if redis.call('HGET', marker, 'run_id') ~= run_id then
  redis.call('HSET', marker, 'run_id', run_id, 'restarted_at', now_s)
  return 'restarted'
end
return 'kept'

--! script acknowledge
-- An operator has dealt with a loss (now_s: epoch s). repair = '1': the marker is damaged (what
-- health could not read, worker/redis_marker.py), so it is replaced by a new one that vouches for
-- the data from now on only: a loss now, acknowledged. Returns 'acknowledged', 'repaired' or
-- 'none' (no marker, or none the watch would keep: nothing written, no key left without a TTL).
if repair == '1' then
  redis.call('DEL', marker)
  redis.call('HSET', marker, 'since', now_s, 'run_id', run_id, 'lost_at', now_s,
    'acknowledged_at', now_s)
  redis.call('EXPIRE', marker, ttl)
  return 'repaired'
end
if redis.call('TYPE', marker)['ok'] ~= 'hash' or redis.call('HEXISTS', marker, 'since') == 0 then
  return 'none'
end
redis.call('HSET', marker, 'acknowledged_at', now_s)
return 'acknowledged'
