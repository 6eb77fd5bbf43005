"""The Redis keys and Lua scripts of reliable fetch (worker/transport.py explains the design).

Every script starts with ``LIBRARY`` and takes the same first six keys: leases, sources, owners,
unacked, holders, unacked index. Messages given back go to the head of their queue (the end
``BLMOVE`` takes from), the oldest first.

Bounds of the keys (beside kombu's own ``unacked`` hash and index, bounded by the jobs in flight):

* ``LEASES_KEY``, ``SOURCES_KEY``, ``OWNERS_KEY``: one entry per live channel's processing list;
  a list whose lease ran out is forgotten by the next sweep once it holds nothing.
* processing lists (``LEASES_KEY.<queue>.<channel>``): at most the messages one fetch moves in
  (``MAX_TAKE``).
* ``HOLDERS_KEY``: one entry per unacked job fetched reliably, dropped at its ack or restore.
* owned sets (``OWNED_PREFIX<channel>``): a channel's unacked jobs; deleted with the channel.
* ``REJECTED_KEY``: capped at ``REJECTED_MAX`` items, the newest kept.
"""

from __future__ import annotations

#: Sorted set: processing list -> lease deadline (Redis clock, seconds).
LEASES_KEY = "_kombu.fetching"
#: Hash: processing list -> the queue list its messages came from.
SOURCES_KEY = "_kombu.fetching.sources"
#: Hash: processing list -> its channel's owned set (the delivery tags it holds unacked).
OWNERS_KEY = "_kombu.fetching.owners"
#: Hash: delivery tag -> the owned set of the channel holding it now. Acks and restores check it,
#: so a channel that stalled past its lease cannot ack or re-queue a job another one took over.
HOLDERS_KEY = "_kombu.fetching.holders"
#: List: fetched items that were not kombu messages (not JSON, no delivery tag), kept for a look.
REJECTED_KEY = "_kombu.fetching.rejected"
#: The most items ``REJECTED_KEY`` keeps.
REJECTED_MAX = 1000
#: Prefix of the owned sets, one per channel.
OWNED_PREFIX = "_kombu.owned."
#: The most messages one fetch moves (TAKE): bounded by the free prefetch slots too.
MAX_TAKE = 16

# replicate_commands() lets TIME precede writes on a Redis 6.2 configured with
# lua-replicate-commands off (a no-op on 7).
LIBRARY = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local leases, sources, owners = KEYS[1], KEYS[2], KEYS[3]
local unacked, holders, index = KEYS[4], KEYS[5], KEYS[6]
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
-- listed in taken_over ({owned set, tag} pairs) for the caller to restore (worker/transport.py:
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
"""

# KEYS: ..., processing, queue, owned, an order's line and jobs (see CLAIM), lower-priority lists...
# ARGV: lease seconds, '1' if this channel may take dead workers' lists over now.
# Before a blocking fetch: renew the lease, give back what a lost reply left in the processing
# list, take over dead workers' lists and jobs, promote.
# Returns {messages given back, then (owned set, delivery tag) pairs to restore}.
PREPARE = """
renew(KEYS[7], KEYS[8], KEYS[9], ARGV[1])
keep_alive(KEYS[9])
local returned = give_back(KEYS[7], KEYS[8])
if ARGV[2] == '1' then returned = returned + take_over_expired(ARGV[1]) end
promote(KEYS[8], 12)
return with_taken_over(returned)
"""

# KEYS: ..., processing, queue, owned, then an order's line and jobs per message (see below),
# then lower-priority lists. ARGV: lease seconds, the number of messages n, then per message:
# raw message, delivery tag, unacked record ('' for a no-ack consumer), and its arrival: job id
# ('' when the message is no order update: its two keys are then placeholders), its position
# ('' = now, µs), the order's TTL s, '1' if it settles, when it is due ('' = now, µs).
# Moves each fetched message from the processing list into kombu's unacked records, the
# channel's owned set and the holders, unless a sweep gave it back to the queue meanwhile (its
# answer is then 0: the caller drops its copy). An order update also takes its place in its
# order's line (layout: tasks/state/orders.py), in the order workers fetch them, before any of
# them can start; one due later (an eta) counts as seen, and as coming back, until it is due,
# so that its order's next update waits for it however long its countdown. Renews the lease
# and promotes for the next fetch. Returns {one 0/1 per message, the messages left in the
# queue}: while some are, the next fetch takes them without blocking.
# Every number it writes is checked first, before any write: one message's bad arrival (a
# position Redis cannot store) costs it its position, never its batch its claims (a script
# that fails halfway keeps its earlier writes).
CLAIM = """
local n = tonumber(ARGV[2])
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
  local a = 2 + (i - 1) * 8
  local ttl = score(ARGV[a + 6])
  ttls[i] = (ttl and ttl >= 1) and math.floor(ttl) or 1
  positions[i] = score(ARGV[a + 5]) or (fetched_at + i - 1)
  local due = score(ARGV[a + 8])
  -- At most the line's TTL ahead: a member due later than its line lives is no member.
  if due then due = math.min(due, fetched_at + ttls[i] * 1000000) end
  dues[i] = due
end
renew(KEYS[7], KEYS[8], KEYS[9], ARGV[1])
local claimed = {}
for i = 1, n do
  local a, k = 2 + (i - 1) * 8, 9 + (i - 1) * 2
  local item, tag, record = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local job, settles, ttl = ARGV[a + 4], ARGV[a + 7], ttls[i]
  if redis.call('LREM', KEYS[7], 1, item) == 0 then
    claimed[i] = 0
  else
    claimed[i] = 1
    if job ~= '' then
      -- A microsecond apart in the order they were fetched, whatever the clock does meanwhile.
      local us = fetched_at + i - 1
      if not redis.call('ZSCORE', KEYS[k + 1], job) then
        redis.call('ZADD', KEYS[k + 1], positions[i], job)
        redis.call('HSET', KEYS[k + 2], job, us)
        if settles == '1' then redis.call('HSET', KEYS[k + 2], job .. ':settle', us) end
      end
      local due = dues[i]
      if due and due > tonumber(redis.call('HGET', KEYS[k + 2], job) or '0') then
        redis.call('HSET', KEYS[k + 2], job, string.format('%d', due))
        redis.call('HSET', KEYS[k + 2], job .. ':next', string.format('%d', due))
      end
      redis.call('EXPIRE', KEYS[k + 1], ttl)
      redis.call('EXPIRE', KEYS[k + 2], ttl)
    end
    if record ~= '' then
      local previous = redis.call('HGET', holders, tag)
      if previous and previous ~= KEYS[9] then redis.call('SREM', previous, tag) end
      redis.call('ZADD', index, now, tag)
      redis.call('HSET', unacked, tag, record)
      redis.call('HSET', holders, tag, KEYS[9])
      redis.call('SADD', KEYS[9], tag)
    end
  end
end
promote(KEYS[8], 10 + 2 * n)
return {claimed, redis.call('LLEN', KEYS[8])}
"""

# KEYS[1]: the queue, KEYS[2]: the channel's processing list. ARGV[1]: the most messages to
# move. The fetch that follows a claim which saw the queue hold more: without blocking, moves up to
# that many messages into the processing list (as BLMOVE does, one at a time) and returns them,
# oldest first, for one CLAIM of them all. Needs no LIBRARY: it only moves.
TAKE = """
local taken = {}
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  taken[i] = item
end
return taken
"""

# KEYS: ..., owned.  ARGV[1]: delivery tag.
# An ack (or a reject without requeue), only by the channel holding the job: a channel that
# stalled past its lease must not delete the record of a job another channel now holds.
# Deletes only, so it runs when Redis is out of memory too. Returns 1 if acked, 0 if not ours.
ACK = """
local holder = redis.call('HGET', holders, ARGV[1])
redis.call('SREM', KEYS[7], ARGV[1])
if holder and holder ~= KEYS[7] then return 0 end
redis.call('ZREM', index, ARGV[1])
redis.call('HDEL', unacked, ARGV[1])
redis.call('HDEL', holders, ARGV[1])
return 1
"""

# KEYS: ..., processing, rejected.  ARGV[1]: raw message, ARGV[2]: most items kept.
# A fetched item that is not a kombu message cannot be delivered nor given back (it would come
# straight back to the front of the queue): it is set aside, kept, in the capped rejected list.
REJECT = """
if redis.call('LREM', KEYS[7], 1, ARGV[1]) > 0 then
  redis.call('LPUSH', KEYS[8], ARGV[1])
  redis.call('LTRIM', KEYS[8], 0, tonumber(ARGV[2]) - 1)
end
"""

# KEYS: ..., then the channel's processing lists.  ARGV: lease seconds, owned set, '1' to renew
# only lists still tracked (the lease keeper: a channel closing meanwhile stays released), '1' if
# this channel may take dead workers' lists over now (SWEEP), then the queue of each list.
_RENEW_ALL = """
for i = 7, #KEYS do
  if ARGV[3] ~= '1' or redis.call('ZSCORE', leases, KEYS[i]) then
    renew(KEYS[i], ARGV[i - 2], ARGV[2], ARGV[1])
  end
end
keep_alive(ARGV[2])
"""

# The lease keeper's beat: renew only.
RENEW = _RENEW_ALL + "return 0\n"

# The periodic sweep: renew, then take over expired lists (at most 100 per call) unless this
# channel's own renewals were failing a moment ago (ARGV[4] '0'). Returns like PREPARE.
SWEEP = (
    _RENEW_ALL
    + """
local n = 0
if ARGV[4] == '1' then n = take_over_expired(ARGV[1]) end
return with_taken_over(n)
"""
)

# KEYS: ..., processing, queue, owned.  ARGV[1]: '1' to keep the lease while the owned set holds
# jobs (a closing channel: their takeover needs it), '0' to drop it (a queue no longer consumed
# by a live channel, whose jobs another lease covers). A channel stopping (or done with a queue)
# gives its fetched messages back and, unless kept, its lease up.
RELEASE = """
local returned = give_back(KEYS[7], KEYS[8])
if ARGV[1] ~= '1' or redis.call('SCARD', KEYS[9]) == 0 then forget(KEYS[7]) end
return returned
"""

SCRIPTS = {
    name: LIBRARY + body
    for name, body in {
        "prepare": PREPARE,
        "claim": CLAIM,
        "ack": ACK,
        "reject": REJECT,
        "renew": RENEW,
        "sweep": SWEEP,
        "release": RELEASE,
    }.items()
}
