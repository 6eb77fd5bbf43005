-- An order's line, jobs and state (tasks/state/orders.py documents the keys). The library's
-- keys: line, jobs, state; it reads Redis' clock (`now`), so its scripts start with it.
--! library
local function forget(job)
  redis.call('ZREM', line, job)
  redis.call('HDEL', jobs, job, job .. ':next', job .. ':settle')
end
-- Registers the job (if new) at position ('' = now) and marks it seen; settles = '1' when a
-- worker registers a sequenced job; waited_long = '1' when the caller has waited for the same
-- head longer than the absence limit. Returns {0, state...} when the job is the head, {1, head,
-- head's next run µs or ''} when it must wait, {2, µs left} while it settles.
local function enter(job, position, settles, ttl, waited_long, absence_us, settle_us)
  if not redis.call('ZSCORE', line, job) then
    if position == '' then position = now end
    redis.call('ZADD', line, position, job)
    if settles == '1' then redis.call('HSET', jobs, job .. ':settle', now) end
  end
  redis.call('HSET', jobs, job, now)
  redis.call('HDEL', jobs, job .. ':next')
  redis.call('EXPIRE', line, ttl)
  redis.call('EXPIRE', jobs, ttl)
  redis.call('EXPIRE', state, ttl)
  while true do
    local head = redis.call('ZRANGE', line, 0, 0)[1]
    if head == job then break end
    local seen = tonumber(redis.call('HGET', jobs, head) or '0')
    if waited_long == '1' and now - seen > tonumber(absence_us) then
      forget(head)
    else
      return {1, head, redis.call('HGET', jobs, head .. ':next') or ''}
    end
  end
  local settled_at = tonumber(redis.call('HGET', jobs, job .. ':settle') or '0')
  local settles_until = settled_at + tonumber(settle_us)
  if now < settles_until then return {2, tostring(settles_until - now)} end
  local s = redis.call('HMGET', state, 'status', 'payment', 'seq', 'job', 'at')
  local has_snapshot = redis.call('HEXISTS', state, 'snapshot')
  return {0, s[1] or '', s[2] or '', s[3] or '', s[4] or '', s[5] or '', has_snapshot}
end
-- Delivered: the order shows (status, payment) now, and the next in line may go.
local function delivered(job, status, payment, seq, ttl)
  forget(job)
  redis.call('HSET', state, 'status', status, 'payment', payment, 'job', job,
             'at', string.format('%.6f', now / 1000000))
  if seq ~= '' and tonumber(seq) > tonumber(redis.call('HGET', state, 'seq') or '-1') then
    redis.call('HSET', state, 'seq', seq)
  end
  redis.call('EXPIRE', state, ttl)
end

--! script enter
return enter(job, position, settles, ttl, waited_long, absence_us, settle_us)

--! script leave
-- The job ended without changing what the order shows: out of line.
forget(job)

--! script delivered
delivered(job, status, payment, seq, ttl)

--! script park
-- The head is re-scheduled: its waiters sleep as long.
if redis.call('ZSCORE', line, job) then
  local next_run = string.format('%d', now + tonumber(seconds) * 1000000)
  redis.call('HSET', jobs, job .. ':next', next_run)
end
