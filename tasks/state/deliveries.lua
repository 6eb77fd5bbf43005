-- A message's delivery hash (tasks/state/deliveries.py documents the keys). The library's key:
-- delivery; its constants (KEEPS_BODY_BELOW, the TTLs, EARLY_MAX, the prefixes) come from
-- deliveries.py and the key registry (tasks/state/keys.py).
--! library
-- The instance's state counts: the delivery key less its last (messageId) segment
-- (DELIVERY_PATTERN captures the instance, then the escaped messageId).
local function count_state(state)
  local instance = string.match(delivery, DELIVERY_PATTERN)
  if not instance then return end
  local counts = COUNTS_PREFIX .. instance
  redis.call('HINCRBY', counts, state, 1)
  redis.call('EXPIRE', counts, COUNTS_TTL)
end
local function bury_if_due()
  if redis.call('HGET', delivery, 'state') ~= 'failed' then return nil end
  if not redis.call('HGET', delivery, 'job') then return nil end
  if redis.call('HSETNX', delivery, 'buried', '1') == 0 then return nil end
  return redis.call('HMGET', delivery, 'job', 'body', 'error', 'error_code', 'updated_at')
end
-- A callback: the message reached state (forward only; failed is final, and ignored from
-- fails_below on). Returns the burial fields when it reported the failure of a known job.
local function apply(state, rank, err, code, at, ttl, fails_below)
  -- failed is final; a repeat only finishes a burial that an error undid (bury_if_due).
  if redis.call('HGET', delivery, 'state') == 'failed' then return bury_if_due() end
  local current = tonumber(redis.call('HGET', delivery, 'rank') or '-1')
  if state == 'failed' then
    if current >= tonumber(fails_below) then return nil end
    redis.call('HSET', delivery, 'state', 'failed', 'rank', rank, 'error', err,
               'error_code', code, 'updated_at', at)
    count_state('failed')
  elseif tonumber(rank) > current then
    redis.call('HSET', delivery, 'state', state, 'rank', rank, 'updated_at', at)
    if tonumber(rank) >= KEEPS_BODY_BELOW then redis.call('HDEL', delivery, 'body') end
    count_state(state)
  else
    return nil
  end
  redis.call('EXPIRE', delivery, ttl)
  return bury_if_due()
end
-- A step in the sending job's history (tasks/state/history.py), when the record names its job.
local function tell_job(step, history_ttl)
  local ok, job = pcall(cjson.decode, redis.call('HGET', delivery, 'job') or '')
  if not ok or type(job) ~= 'table' or type(job.job) ~= 'string' then return end
  local key = HISTORY_PREFIX .. job.job
  redis.call('RPUSH', key, cjson.encode(step))
  redis.call('LTRIM', key, -HISTORY_MAX, -1)
  redis.call('EXPIRE', key, history_ttl)
end
-- The instance's early callbacks (a hash and its arrival times) and the message's field.
local function early_keys()
  local instance, message = string.match(delivery, DELIVERY_PATTERN)
  if not instance then return nil end
  return EARLY_PREFIX .. instance, EARLY_AT_PREFIX .. instance, message
end
-- A callback for a message no job linked: kept in the instance's early entries (the best state
-- so far, by apply's rules), after dropping those past EARLY_TTL and, at the cap, the oldest.
-- Returns how many entries the cap evicted.
local function keep_early(state, rank, err, code, at, now, fails_below)
  local entries, arrivals, message = early_keys()
  if not entries then return 0 end
  now = tonumber(now)
  local stale = redis.call('ZRANGEBYSCORE', arrivals, '-inf', now - EARLY_TTL, 'LIMIT', 0, 1000)
  if #stale > 0 then
    redis.call('HDEL', entries, unpack(stale))
    redis.call('ZREM', arrivals, unpack(stale))
  end
  local kept = redis.call('HGET', entries, message)
  local evicted = 0
  if kept then
    local old = cjson.decode(kept)
    if old.s == 'failed' then return 0 end
    if state == 'failed' then
      if old.r >= tonumber(fails_below) then return 0 end
    elseif tonumber(rank) <= old.r then
      return 0
    end
  else
    local over = redis.call('ZCARD', arrivals) - EARLY_MAX + 1
    if over > 0 then
      local oldest = redis.call('ZPOPMIN', arrivals, over)
      for i = 1, #oldest, 2 do
        redis.call('HDEL', entries, oldest[i])
        evicted = evicted + 1
      end
    end
  end
  redis.call('HSET', entries, message,
             cjson.encode({s = state, r = tonumber(rank), e = err, c = code, a = at}))
  redis.call('ZADD', arrivals, now, message)
  redis.call('EXPIRE', entries, EARLY_TTL)
  redis.call('EXPIRE', arrivals, EARLY_TTL)
  return evicted
end
-- The message's early entry, removed (nil when none, or past EARLY_TTL at now).
local function take_early(now)
  local entries, arrivals, message = early_keys()
  if not entries then return nil end
  local kept = redis.call('HGET', entries, message)
  if not kept then return nil end
  local arrived = tonumber(redis.call('ZSCORE', arrivals, message) or '0')
  redis.call('HDEL', entries, message)
  redis.call('ZREM', arrivals, message)
  if arrived < tonumber(now) - EARLY_TTL then return nil end
  return cjson.decode(kept)
end
-- The job that sent the message (job: JSON of what its dead letter needs); returns the burial
-- fields when its failure came first. The usual case, no callback yet, is one HSET (and a
-- look at the early entries).
local function link(job, body, zaap_id, linked_at, ttl)
  if redis.call('EXISTS', delivery) == 0 then
    redis.call('HSET', delivery, 'job', job, 'body', body, 'zaap_id', zaap_id,
               'state', 'accepted', 'rank', 0, 'updated_at', linked_at)
    redis.call('EXPIRE', delivery, ttl)
    count_state('accepted')
    local early = take_early(linked_at)
    if not early then return nil end
    return apply(early.s, early.r, early.e, early.c, early.a, ttl, KEEPS_BODY_BELOW)
  end
  redis.call('HSET', delivery, 'job', job, 'zaap_id', zaap_id)
  local rank = tonumber(redis.call('HGET', delivery, 'rank') or '0')
  if rank < KEEPS_BODY_BELOW or redis.call('HGET', delivery, 'state') == 'failed' then
    redis.call('HSET', delivery, 'body', body)
  end
  redis.call('EXPIRE', delivery, ttl)
  return bury_if_due()
end

--! script link
return link(job, body, zaap_id, linked_at, ttl)

--! script withdraw
-- Taken out of Z-API's queue before it fired (tasks/reconcile.py): an accepted message only
-- becomes withdrawn (final, by the newer job `by`, for `reason`); its body goes, as nothing can
-- fail it now. Returns 1 when it did.
if redis.call('HGET', delivery, 'state') ~= 'accepted' then return 0 end
redis.call('HSET', delivery, 'state', 'withdrawn', 'rank', rank, 'withdrawn_by', by,
           'withdrawn_reason', reason, 'updated_at', at)
redis.call('HDEL', delivery, 'body')
redis.call('EXPIRE', delivery, ttl)
count_state('withdrawn')
tell_job({t = tonumber(at), k = 'delivery', state = 'withdrawn', by = by, why = reason},
         history_ttl)
return 1

--! script apply
-- apply's seven arguments, then received_at (the receiver's clock, epoch s) and history_ttl (a
-- change is a step in the job's history). A message no job
-- linked gets an early entry: {0, entries evicted}; a linked one {1} or {1, burial fields}.
if redis.call('HEXISTS', delivery, 'job') == 0 then
  return {0, keep_early(state, rank, err, code, at, received_at, fails_below)}
end
local before = redis.call('HGET', delivery, 'state')
local burial = apply(state, rank, err, code, at, ttl, fails_below)
local after = redis.call('HGET', delivery, 'state')
if after ~= before then
  local step = {t = tonumber(at), k = 'delivery', state = after}
  if after == 'failed' then step.error = err; step.code = code end
  tell_job(step, history_ttl)
end
if burial then return {1, burial} end
return {1}
