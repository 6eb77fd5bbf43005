-- Reliable fetch (worker/fetch_scripts.py lists the keys and their bounds; worker/transport.py
-- explains the design). The library's keys, first in every script but TAKE: leases, sources,
-- owners, unacked, holders, index. Messages given back go to the head of their queue (the end
-- BLMOVE takes from), the oldest first.
--! library
-- replicate_commands() lets TIME precede writes on a Redis 6.2 configured with
-- lua-replicate-commands off (a no-op on 7).
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local taken_over = {}
local function renew(processing, queue, owned, lease)
  redis.call('ZADD', leases, now + tonumber(lease), processing)
  redis.call('HSET', sources, processing, queue)
  redis.call('HSET', owners, processing, owned)
end
-- The visibility timeout runs from the owner's last sign of life, not from the delivery: a live
-- worker's jobs (an eta hours away included) are never handed to a second worker.
local function keep_alive(owned)
  for _, tag in ipairs(redis.call('SMEMBERS', owned)) do
    redis.call('ZADD', index, 'XX', now, tag)
  end
end
-- renew and sweep: a channel's lists (KEYS[first]..., each list's queue at ARGV[queues]...) and
-- its jobs' index; with only_tracked = '1', only the lists still tracked.
local function renew_lists(first, queues, owned, lease, only_tracked)
  for i = 0, #KEYS - first do
    local processing = KEYS[first + i]
    if only_tracked ~= '1' or redis.call('ZSCORE', leases, processing) then
      renew(processing, ARGV[queues + i], owned, lease)
    end
  end
  keep_alive(owned)
end
local function give_back(processing, queue)
  local n = 0
  while redis.call('LMOVE', processing, queue, 'LEFT', 'RIGHT') do n = n + 1 end
  return n
end
local function forget(processing)
  redis.call('ZREM', leases, processing)
  redis.call('HDEL', sources, processing)
  redis.call('HDEL', owners, processing)
end
-- Expired lists: their messages go back to the queue, and their owner's jobs still unacked are
-- listed in taken_over ({owned set, tag} pairs) for the caller to restore (worker/fetch_leases.py:
-- one transaction restores the job and drops it from the owned set). Until both are empty the
-- list stays tracked, one more lease at a time, so that a takeover cut short is finished by a
-- later sweep, and an owner that had only stalled still has a tracked list when it resumes.
local function take_over_expired(lease)
  local n = 0
  for _, processing in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 100)) do
    local queue = redis.call('HGET', sources, processing)
    local returned = queue and give_back(processing, queue) or 0
    local owned = redis.call('HGET', owners, processing)
    local held = 0
    if owned then
      for _, tag in ipairs(redis.call('SMEMBERS', owned)) do
        local holder = redis.call('HGET', holders, tag)
        if redis.call('HEXISTS', unacked, tag) == 1 and (not holder or holder == owned) then
          taken_over[#taken_over + 1] = owned
          taken_over[#taken_over + 1] = tag
          held = held + 1
        else
          redis.call('SREM', owned, tag)
        end
      end
    end
    if returned + held > 0 then
      redis.call('ZADD', leases, now + tonumber(lease), processing)
    else
      forget(processing)
      if owned then redis.call('DEL', owned) end
    end
    n = n + returned
  end
  return n
end
local function with_taken_over(n)
  local out = {n}
  for _, item in ipairs(taken_over) do out[#out + 1] = item end
  return out
end
-- When the queue is empty, move the next message of the highest lower priority into it, so
-- that one BLMOVE on the queue serves every priority. KEYS[first..]: lower-priority lists.
local function promote(queue, first)
  if redis.call('LLEN', queue) > 0 then return end
  for i = first, #KEYS do
    if redis.call('LMOVE', KEYS[i], queue, 'RIGHT', 'RIGHT') then return end
  end
end

--! script prepare
-- Keys: ..., processing, queue, owned, then `lower`: the lower-priority lists. Before a
-- blocking fetch: renew the lease, give back what a lost reply left in the processing list,
-- take over dead workers' lists and jobs (may_take_over = '1'), promote. Returns {messages
-- given back, then (owned set, delivery tag) pairs to restore}.
renew(processing, queue, owned, lease)
keep_alive(owned)
local returned = give_back(processing, queue)
if may_take_over == '1' then returned = returned + take_over_expired(lease) end
promote(queue, lower_from)
return with_taken_over(returned)

--! script claim
-- Keys: ..., processing, queue, owned, then `lines`: an order's line and jobs per message, then
-- the lower-priority lists. Arguments: lease seconds, the number of messages n, then `messages`:
-- per message, raw message, delivery tag, unacked record ('' for a no-ack consumer), and its
-- arrival: job id ('' when the message is no order update: its two keys are then
-- placeholders), its position ('' = now, µs), the order's TTL s, '1' if it settles, when it is
-- due ('' = now, µs).
-- Moves each fetched message from the processing list into kombu's unacked records, the
-- channel's owned set and the holders, unless a sweep gave it back to the queue meanwhile (its
-- answer is then 0: the caller drops its copy). An order update also takes its place in its
-- order's line (layout: tasks/state/orders.py), in the order workers fetch them, before any of
-- them can start; one due later (an eta) counts as seen, and as coming back, until it is due,
-- so that its order's next update waits for it however long its countdown. Renews the lease
-- and promotes for the next fetch. Returns {one 0/1 per message, the messages left in the
-- queue}: while some are, the next fetch takes them without blocking.
-- Every number it writes is checked first, before any write: one message's bad arrival (a
-- position Redis cannot store) costs it its position, never its batch its claims (a script
-- that fails halfway keeps its earlier writes).
local n = tonumber(count)
local t2 = redis.call('TIME')
local fetched_at = tonumber(t2[1]) * 1000000 + tonumber(t2[2])
-- A score Redis stores exactly, or nil.
local function score(text)
  local value = tonumber(text)
  if value == nil or value ~= value or value < 0 or value >= 9007199254740992 then return nil end
  return value
end
local positions, dues, ttls = {}, {}, {}
for i = 1, n do
  local a = messages_from - 1 + (i - 1) * 8
  local ttl = score(ARGV[a + 6])
  ttls[i] = (ttl and ttl >= 1) and math.floor(ttl) or 1
  positions[i] = score(ARGV[a + 5]) or (fetched_at + i - 1)
  local due = score(ARGV[a + 8])
  -- At most the line's TTL ahead: a member due later than its line lives is no member.
  if due then due = math.min(due, fetched_at + ttls[i] * 1000000) end
  dues[i] = due
end
renew(processing, queue, owned, lease)
local claimed = {}
for i = 1, n do
  local a, k = messages_from - 1 + (i - 1) * 8, lines_from - 1 + (i - 1) * 2
  local item, tag, record = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local job, settles, ttl = ARGV[a + 4], ARGV[a + 7], ttls[i]
  if redis.call('LREM', processing, 1, item) == 0 then
    claimed[i] = 0
  else
    claimed[i] = 1
    if job ~= '' then
      local line, jobs = KEYS[k + 1], KEYS[k + 2]
      -- A microsecond apart in the order they were fetched, whatever the clock does meanwhile.
      local us = fetched_at + i - 1
      if not redis.call('ZSCORE', line, job) then
        redis.call('ZADD', line, positions[i], job)
        redis.call('HSET', jobs, job, us)
        if settles == '1' then redis.call('HSET', jobs, job .. ':settle', us) end
      end
      local due = dues[i]
      if due and due > tonumber(redis.call('HGET', jobs, job) or '0') then
        redis.call('HSET', jobs, job, string.format('%d', due))
        redis.call('HSET', jobs, job .. ':next', string.format('%d', due))
      end
      redis.call('EXPIRE', line, ttl)
      redis.call('EXPIRE', jobs, ttl)
    end
    if record ~= '' then
      local previous = redis.call('HGET', holders, tag)
      if previous and previous ~= owned then redis.call('SREM', previous, tag) end
      redis.call('ZADD', index, now, tag)
      redis.call('HSET', unacked, tag, record)
      redis.call('HSET', holders, tag, owned)
      redis.call('SADD', owned, tag)
    end
  end
end
promote(queue, lines_from + 2 * n)
return {claimed, redis.call('LLEN', queue)}

--! script take
local taken = {}
for i = 1, tonumber(most) do
  local item = redis.call('LMOVE', queue, processing, 'RIGHT', 'LEFT')
  if not item then break end
  taken[i] = item
end
return taken

--! script ack
-- An ack (or a reject without requeue) of delivery tag `tag`, only by the channel holding the
-- job (`owned`, its owned set): a channel that stalled past its lease must not delete the
-- record of a job another channel now holds. Deletes only, so it runs when Redis is out of
-- memory too. Returns 1 if acked, 0 if not ours.
local holder = redis.call('HGET', holders, tag)
redis.call('SREM', owned, tag)
if holder and holder ~= owned then return 0 end
redis.call('ZREM', index, tag)
redis.call('HDEL', unacked, tag)
redis.call('HDEL', holders, tag)
return 1

--! script reject
-- A fetched item that is not a kombu message cannot be delivered nor given back (it would come
-- straight back to the front of the queue): it is set aside, kept, in the capped rejected list
-- (at most `most` items).
if redis.call('LREM', processing, 1, item) > 0 then
  redis.call('LPUSH', rejected, item)
  redis.call('LTRIM', rejected, 0, tonumber(most) - 1)
end

--! script renew
-- The lease keeper's beat. Keys: ..., then `processing_lists`, the channel's. Arguments: lease
-- seconds, owned set, only_tracked = '1' to renew only lists still tracked (a channel closing
-- meanwhile stays released), may_take_over (unused here), then `queues`: each list's queue.
renew_lists(processing_lists_from, queues_from, owned, lease, only_tracked)
return 0

--! script sweep
-- The periodic sweep: renew as above, then take over expired lists (at most 100 per call)
-- unless this channel's own renewals were failing a moment ago (may_take_over '0'). Returns
-- like prepare.
renew_lists(processing_lists_from, queues_from, owned, lease, only_tracked)
local n = 0
if may_take_over == '1' then n = take_over_expired(lease) end
return with_taken_over(n)

--! script release
-- A channel stopping (or done with a queue) gives its fetched messages back and, unless kept
-- (keep = '1' while the owned set holds jobs: a closing channel's takeover needs the lease),
-- its lease up. The transport calls it with keep = '0': a queue no longer consumed by a live
-- channel, whose jobs another lease covers.
local returned = give_back(processing, queue)
if keep ~= '1' or redis.call('SCARD', owned) == 0 then forget(processing) end
return returned
