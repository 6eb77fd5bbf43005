-- The marker that only a loss of data removes (worker/redis_marker.py).

--! script watch
-- Renews the marker (now_s: the worker's clock, epoch s; run_id: the server's; starting = '1'
-- at a worker's start-up). Returns 'new' (written where none was), 'kept', 'restarted' (run_id
-- changed, data kept) or 'lost' (gone since the last look: a new marker says when).
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
