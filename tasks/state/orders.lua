-- An order's line, jobs and state (tasks/state/orders.py documents the keys). The library's
-- keys: line, jobs, state; it reads Redis' clock (`now`), so its scripts start with it.
--! library
local function forget(job)
  redis.call('ZREM', line, job)
  redis.call('HDEL', jobs, job, job .. ':next', job .. ':settle', job .. ':as')
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
-- Superseding (tasks/state/orders.py). as: the job's update, 'FIELD:STATE:,STATE,...,' with the
-- states of that field that do not move back from it ('' for none), noted so that it can
-- supersede older ones; may = '1' when it may be superseded. Returns {job, state} for the newest
-- later job in line whose update is of the same field, in a state that moves back neither from
-- this one's nor from any update of the field between them (so the order ends where sending
-- them all would), seen within absence_us (a lost job supersedes nothing); else nil. A later
-- job whose update is not noted yet (it has not run) ends the search: nothing past it is known.
local function newer_of(job, as, may, absence_us)
  if as == '' then return nil end
  redis.call('HSET', jobs, job .. ':as', as)
  if may ~= '1' then return nil end
  local rank = redis.call('ZRANK', line, job)
  if not rank then return nil end
  local field, _, by = string.match(as, '^([^:]+):([^:]+):(.*)$')
  local later = {}
  for _, other in ipairs(redis.call('ZRANGE', line, rank + 1, -1)) do
    local noted = redis.call('HGET', jobs, other .. ':as')
    if not noted then break end
    local other_field, state, other_by = string.match(noted, '^([^:]+):([^:]+):(.*)$')
    if other_field == field then
      local seen = tonumber(redis.call('HGET', jobs, other) or '0')
      later[#later + 1] = {other, state, other_by, now - seen <= tonumber(absence_us)}
    end
  end
  for i = #later, 1, -1 do
    local state = ',' .. later[i][2] .. ','
    local ok = later[i][4] and string.find(by, state, 1, true)
    for j = 1, i - 1 do
      ok = ok and string.find(later[j][3], state, 1, true)
    end
    if ok then return {later[i][1], later[i][2]} end
  end
  return nil
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
