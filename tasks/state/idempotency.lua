-- A key's claim, reply and sent record (tasks/state/idempotency.py documents the keys). The
-- library's keys: idem_reply, idem_claim, idem_sent; other stores' scripts compose it
-- (tasks/state/turns.py).
--! library
-- A send left "inflight" by another execution whose claim is gone was abandoned (that execution
-- died or froze past its lease): its outcome is unknown, so it counts as ambiguous.
local function abandoned_to_ambiguous(owner)
  local inflight = redis.call('HGET', idem_sent, 'inflight')
  if inflight and inflight ~= owner then
    redis.call('HINCRBY', idem_sent, 'ambiguous', 1)
    redis.call('HSET', idem_sent, 'abandoned:' .. inflight, 1)
    redis.call('HDEL', idem_sent, 'inflight')
  end
  return tonumber(redis.call('HGET', idem_sent, 'ambiguous') or '0')
end
-- The outcome when this execution must not send: {1, reply} if the key was delivered, {2, holder}
-- if another execution holds the claim. Otherwise takes (or renews) the claim and returns nil.
local function delivered_or_held(owner, lease_ms)
  local reply = redis.call('GET', idem_reply)
  if reply then return {1, reply} end
  local holder = redis.call('GET', idem_claim)
  if holder and holder ~= owner then return {2, holder} end
  redis.call('SET', idem_claim, owner, 'PX', lease_ms)
  return nil
end
-- Returns {state, data}: 1 delivered (data: the reply), 2 busy (data: the holder), 0 claimed
-- (data: ambiguous sends so far).
local function claim(owner, lease_ms)
  local done = delivered_or_held(owner, lease_ms)
  if done then return done end
  return {0, tostring(abandoned_to_ambiguous(owner))}
end
-- Right before the send: re-takes the claim (it may have lapsed during the slot wait) for the
-- request's deadline and marks the send in flight.
local function before_send(owner, lease_ms, ttl)
  local done = delivered_or_held(owner, lease_ms)
  if done then return done end
  local ambiguous = abandoned_to_ambiguous(owner)
  redis.call('HSET', idem_sent, 'inflight', owner)
  redis.call('EXPIRE', idem_sent, ttl)
  return {0, tostring(ambiguous)}
end
-- before_send, counting a send that goes ahead in the instance's sends (tasks/state/sends.py):
-- HINCRBY counter second, the hash expiring after counter_ttl.
local function mark_sent(owner, lease_ms, ttl, counter, second, counter_ttl)
  local answer = before_send(owner, lease_ms, ttl)
  if answer[1] == 0 then
    redis.call('HINCRBY', counter, second, 1)
    redis.call('EXPIRE', counter, counter_ttl)
  end
  return answer
end
-- Sends of other executions that may have reached Z-API besides ours: the ones counted (less
-- ours, if another execution counted it as abandoned: its outcome is this reply), and one in
-- flight now (it took the key over while our reply waited for Redis).
local function others_ambiguous(owner)
  local counted = tonumber(redis.call('HGET', idem_sent, 'ambiguous') or '0')
  if redis.call('HEXISTS', idem_sent, 'abandoned:' .. owner) == 1 then counted = counted - 1 end
  local inflight = redis.call('HGET', idem_sent, 'inflight')
  if inflight and inflight ~= owner then counted = counted + 1 end
  return counted
end
-- The first reply recorded stays (a later one is a duplicate's), with at least the ambiguous
-- sends others_ambiguous finds. Returns '' when this one is the first as given, else the record
-- as stored (the first one's, or ours with more ambiguity): the job's result must be that one.
local function record(owner, reply, ttl)
  local others = others_ambiguous(owner)
  local amended = false
  if others > 0 then
    local data = cjson.decode(reply)
    if others > (tonumber(data.reply.ambiguousAttempts) or 0) then
      data.reply.ambiguousAttempts = others
      reply, amended = cjson.encode(data), true
    end
  end
  local first = redis.call('SET', idem_reply, reply, 'NX', 'EX', ttl)
  redis.call('DEL', idem_sent)
  if redis.call('GET', idem_claim) == owner then redis.call('DEL', idem_claim) end
  if first and not amended then return '' end
  return redis.call('GET', idem_reply) or ''
end

--! script claim
return claim(owner, lease_ms)

--! script before_send
-- counter: the instance's sends counter. lease_ms: the request's deadline and a margin.
return mark_sent(owner, lease_ms, ttl, counter, second, counter_ttl)

--! script record
return record(owner, reply, ttl)

--! script after_failed_send
-- A send that got no reply; may_have_reached = '1' if it may have reached Z-API. Returns the
-- ambiguous sends so far.
if redis.call('HGET', idem_sent, 'inflight') == owner then
  redis.call('HDEL', idem_sent, 'inflight')
  if may_have_reached == '1' then redis.call('HINCRBY', idem_sent, 'ambiguous', 1) end
end
if redis.call('EXISTS', idem_sent) == 1 then redis.call('EXPIRE', idem_sent, ttl) end
if redis.call('GET', idem_claim) == owner then redis.call('DEL', idem_claim) end
return tonumber(redis.call('HGET', idem_sent, 'ambiguous') or '0')

--! script withdraw
-- A send marked in flight that will not happen after all (the update turned out stale): unmarks
-- it, uncounts it (the counter's field `second`), drops our claim.
if redis.call('HGET', idem_sent, 'inflight') == owner then
  redis.call('HDEL', idem_sent, 'inflight')
  if redis.call('HINCRBY', counter, second, -1) <= 0 then redis.call('HDEL', counter, second) end
end
if redis.call('GET', idem_claim) == owner then redis.call('DEL', idem_claim) end

--! script release
-- No send happened (the job is deferred): drop our claim only.
if redis.call('GET', idem_claim) == owner then return redis.call('DEL', idem_claim) end
return 0
