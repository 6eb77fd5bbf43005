-- Dead letters (tasks/state/deadletter.py documents the keys and their bounds).

--! script store
-- Keys: index, trimmed counter, the set of error types, the set of instance aliases, legacy_key
-- (migration only, else ''): the legacy hash, whose fields are moved only while they still
-- exist there (a concurrent migration, or a purge after it, is not undone); then `dropping`:
-- keys deleted with the letters' storing, in the same step (a buried job's recorded reply, so
-- that its replay is sent: tasks/state/deliveries.py). Arguments: letter key prefix, ttl s, max
-- letters, type set prefix, max types, instance set prefix, max instances, then `letters`: per
-- letter, job id, failed_at (epoch s), record, error type, instance alias.
-- Each letter is also in its type's sorted set (and in no other) and in its instance's, trimmed
-- with the index. A letter already older than the TTL is not stored. Then the index loses its
-- expired entries, and its oldest beyond the cap, whose letters are deleted and counted (only
-- letters that existed: an entry still waiting for migration is not a letter yet).
-- A letter's instance set is found again from its record (a job keeps its instance), so
-- replacing or dropping a letter touches one instance set, however many there are.
-- Returns {stored, expired, dropped}. replicate_commands() lets TIME precede writes on a Redis
-- 6.2 configured with lua-replicate-commands off (a no-op on 7).
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl, cap = tonumber(ttl_s), tonumber(max_letters)
max_types, max_instances = tonumber(max_types), tonumber(max_instances)
local legacy = legacy_key ~= '' and legacy_key or nil
local stored, expired = 0, 0
local cutoff = string.format('%.6f', now - ttl)
local function forget_type(id)
  for _, kind in ipairs(redis.call('SMEMBERS', types)) do
    redis.call('ZREM', type_prefix .. kind, id)
  end
end
-- A name among at most `most` in `names`, else `other` (added to `names` when new).
local function counted_as(names, name, most, other)
  if redis.call('SISMEMBER', names, name) == 0 and redis.call('SCARD', names) >= most then
    name = other
  end
  redis.call('SADD', names, name)
  return name
end
-- The instance set a stored letter is in: the alias of its record's kwargs.instance.
local function instance_set_of(id)
  local record = redis.call('GET', prefix .. id)
  if not record then return nil end
  local ok, data = pcall(cjson.decode, record)
  if not ok or type(data) ~= 'table' then return nil end
  local alias = type(data['kwargs']) == 'table' and data['kwargs']['instance'] or nil
  if type(alias) ~= 'string' then alias = 'default' end
  if redis.call('SISMEMBER', instances, alias) == 0 then alias = '(other)' end
  return instance_prefix .. alias
end
local function forget_instance(id)
  local set = instance_set_of(id)
  if set then redis.call('ZREM', set, id) end
end
local function expire_with(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
for i = letters_from, #ARGV, 5 do
  local id = ARGV[i]
  if not legacy or redis.call('HEXISTS', legacy, id) == 1 then
    local ms = math.floor((tonumber(ARGV[i + 1]) + ttl - now) * 1000)
    forget_type(id)
    forget_instance(id)
    if ms > 0 then
      local kind = counted_as(types, ARGV[i + 3], max_types, 'other')
      local alias = ARGV[i + 4]
      if not string.match(alias, '^[a-z0-9_%-]+$') or #alias > 40 then alias = '(other)' end
      local by_instance = instance_prefix .. counted_as(instances, alias, max_instances, '(other)')
      redis.call('SET', prefix .. id, ARGV[i + 2], 'PX', ms)
      redis.call('ZADD', index, ARGV[i + 1], id)
      redis.call('ZADD', type_prefix .. kind, ARGV[i + 1], id)
      redis.call('ZREMRANGEBYSCORE', by_instance, '-inf', cutoff)
      redis.call('ZADD', by_instance, ARGV[i + 1], id)
      for _, key in ipairs({index, types, type_prefix .. kind, instances, by_instance}) do
        expire_with(key, ms)
      end
      stored = stored + 1
    else
      redis.call('ZREM', index, id)
      expired = expired + 1
    end
    if legacy then redis.call('HDEL', legacy, id) end
  end
end
redis.call('ZREMRANGEBYSCORE', index, '-inf', cutoff)
for _, kind in ipairs(redis.call('SMEMBERS', types)) do
  redis.call('ZREMRANGEBYSCORE', type_prefix .. kind, '-inf', cutoff)
end
local dropped = 0
local excess = redis.call('ZCARD', index) - cap
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', index, 0, excess - 1)) do
    forget_instance(id)
    dropped = dropped + redis.call('DEL', prefix .. id)
    forget_type(id)
  end
  redis.call('ZREMRANGEBYRANK', index, 0, excess - 1)
  if dropped > 0 then redis.call('INCRBY', trimmed, dropped) end
end
for i = dropping_from, #KEYS do redis.call('DEL', KEYS[i]) end
return {stored, expired, dropped}

--! script count
-- The letters not expired yet, on Redis' clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZCOUNT', index, string.format('(%.6f', now - tonumber(ttl_s)), '+inf')

--! script count_by_type
-- {name, count, ...} of the letters not expired yet, per name of `names` (the error types, or
-- the instance aliases) in the sorted sets set_prefix .. name.
local t = redis.call('TIME')
local cutoff = string.format('(%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(ttl_s))
local counts = {}
for _, kind in ipairs(redis.call('SMEMBERS', names)) do
  table.insert(counts, kind)
  table.insert(counts, redis.call('ZCOUNT', set_prefix .. kind, cutoff, '+inf'))
end
return counts
