-- Webhook callback counts (tasks/state/webhook_stats.py documents the key).

--! script count
-- At most `cap` fields: a new type beyond it counts as `<outcome>:?`.
local field = outcome .. ':' .. kind
if redis.call('HEXISTS', counts, field) == 0 and redis.call('HLEN', counts) >= tonumber(cap) then
  field = outcome .. ':?'
end
redis.call('HINCRBY', counts, field, amount)
redis.call('EXPIRE', counts, ttl)
return 1
