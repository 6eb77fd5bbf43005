"""The Redis keys and Lua scripts of reliable fetch (worker/transport.py explains the design).

Every script starts with ``LIBRARY`` and takes the same first four keys: leases, sources,
owners, unacked. Messages given back go to the head of their queue (the end ``BLMOVE`` takes
from), the oldest first.
"""

from __future__ import annotations

#: Sorted set: processing list -> lease deadline (Redis clock, seconds).
LEASES_KEY = "_kombu.fetching"
#: Hash: processing list -> the queue list its messages came from.
SOURCES_KEY = "_kombu.fetching.sources"
#: Hash: processing list -> its channel's owned set (the delivery tags it holds unacked).
OWNERS_KEY = "_kombu.fetching.owners"
#: List: fetched items that were not kombu messages (not JSON, no delivery tag), kept for a look.
REJECTED_KEY = "_kombu.fetching.rejected"
#: Prefix of the owned sets, one per channel.
OWNED_PREFIX = "_kombu.owned."

# replicate_commands() lets TIME precede writes on a Redis 6.2 configured with
# lua-replicate-commands off (a no-op on 7).
LIBRARY = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local leases, sources, owners, unacked = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local taken_over = {}
local function renew(processing, queue, owned, lease)
  redis.call('ZADD', leases, now + tonumber(lease), processing)
  redis.call('HSET', sources, processing, queue)
  redis.call('HSET', owners, processing, owned)
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
-- listed in taken_over ({owned set, tag} pairs) for the caller to restore and then remove from
-- the owned set. Until both are empty the list stays tracked, one more lease at a time, so that
-- a takeover cut short is finished by a later sweep, and an owner that had only stalled still
-- has a tracked list when it resumes.
local function take_over_expired(lease)
  local n = 0
  for _, processing in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 100)) do
    local queue = redis.call('HGET', sources, processing)
    local returned = queue and give_back(processing, queue) or 0
    local owned = redis.call('HGET', owners, processing)
    local held = 0
    if owned then
      for _, tag in ipairs(redis.call('SMEMBERS', owned)) do
        if redis.call('HEXISTS', unacked, tag) == 1 then
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

# KEYS: ..., processing, queue, owned, unacked index (unused here), lower-priority lists...
# ARGV[1]: lease seconds.
# Before a blocking fetch: renew the lease, give back what a lost reply left in the processing
# list, take over dead workers' lists and jobs, promote.
# Returns {messages given back, then (owned set, delivery tag) pairs to restore}.
PREPARE = """
renew(KEYS[5], KEYS[6], KEYS[7], ARGV[1])
local returned = give_back(KEYS[5], KEYS[6]) + take_over_expired(ARGV[1])
promote(KEYS[6], 9)
return with_taken_over(returned)
"""

# KEYS: ..., processing, queue, owned, unacked index, lower-priority lists...
# ARGV: lease seconds, raw message, delivery tag, time, unacked record ('' for a no-ack consumer).
# Moves a fetched message from the processing list into kombu's unacked records and into the
# channel's owned set, unless a sweep gave it back to the queue meanwhile (then returns 0: the
# caller drops its copy). Renews the lease and promotes for the next fetch.
CLAIM = """
renew(KEYS[5], KEYS[6], KEYS[7], ARGV[1])
if redis.call('LREM', KEYS[5], 1, ARGV[2]) == 0 then return 0 end
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[8], ARGV[4], ARGV[3])
  redis.call('HSET', unacked, ARGV[3], ARGV[5])
  redis.call('SADD', KEYS[7], ARGV[3])
end
promote(KEYS[6], 9)
return 1
"""

# KEYS: ..., processing, rejected.  ARGV[1]: raw message.
# A fetched item that is not a kombu message cannot be delivered nor given back (it would come
# straight back to the front of the queue): it is set aside, kept, in the rejected list.
REJECT = """
if redis.call('LREM', KEYS[5], 1, ARGV[1]) > 0 then redis.call('LPUSH', KEYS[6], ARGV[1]) end
"""

# KEYS: ..., then the channel's processing lists.  ARGV: lease seconds, owned set, then the
# queue of each of those lists.
_RENEW_ALL = """
for i = 5, #KEYS do renew(KEYS[i], ARGV[i - 2], ARGV[2], ARGV[1]) end
"""

# The lease keeper's beat: renew only.
RENEW = _RENEW_ALL + "return 0\n"

# The periodic sweep: renew, then take over expired lists (at most 100 per call). Returns like
# PREPARE.
SWEEP = _RENEW_ALL + "return with_taken_over(take_over_expired(ARGV[1]))\n"

# KEYS: ..., processing, queue.  A channel stopping (or done with a queue) gives its fetched
# messages back and its lease up.
RELEASE = """
local returned = give_back(KEYS[5], KEYS[6])
forget(KEYS[5])
return returned
"""

SCRIPTS = {
    name: LIBRARY + body
    for name, body in {
        "prepare": PREPARE,
        "claim": CLAIM,
        "reject": REJECT,
        "renew": RENEW,
        "sweep": SWEEP,
        "release": RELEASE,
    }.items()
}
