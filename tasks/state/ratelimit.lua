-- An instance's send schedule (tasks/state/ratelimit.py documents the keys and the algorithm).
-- The library's keys: rate_schedule, rate_hold, rate_recipient.
--! library
-- The schedule holds the instance's theoretical arrival time (µs); the hold is set while its phone
-- is disconnected; the recipient's key holds when that phone may get its next send (µs), and is
-- only looked at when recipient_interval > 0.
-- Arguments: now µs, emission interval µs, burst tolerance µs, recipient interval µs, longest
-- hold wait µs. Returns {granted, slot_us, now_us}: granted=1 reserved slot_us; granted=0 means the
-- recipient is paced until slot_us, granted=2 that the instance is held (look again at slot_us);
-- nothing was reserved then.
local function reserve_slot(now, interval, tolerance, recipient_interval, hold_look)
  interval, tolerance = tonumber(interval), tonumber(tolerance)
  recipient_interval = tonumber(recipient_interval)
  local held_ms = redis.call('PTTL', rate_hold)
  if held_ms > 0 then
    return {2, now + math.min(held_ms * 1000, tonumber(hold_look)), now}
  end
  local paced = recipient_interval > 0
  if paced then
    local next_allowed = tonumber(redis.call('GET', rate_recipient) or '0')
    if next_allowed > now then
      return {0, next_allowed, now}
    end
  end
  local tat = tonumber(redis.call('GET', rate_schedule) or '0')
  if tat < now then tat = now end
  local slot = tat - tolerance
  if slot < now then slot = now end
  local new_tat = tat + interval
  redis.call('SET', rate_schedule, string.format('%d', new_tat),
              'PX', math.ceil((new_tat - now) / 1000) + 1000)
  if paced then
    local next_allowed = slot + recipient_interval
    redis.call('SET', rate_recipient, string.format('%d', next_allowed),
                'PX', math.ceil((next_allowed - now) / 1000) + 1000)
  end
  return {1, slot, now}
end

--! script reserve
return reserve_slot(now, interval, tolerance, recipient_interval, hold_look)

--! script penalize
-- Moves the schedule so that no new slot starts before the pause ends (asked_us: the pause Z-API
-- asked for, 0: none), and records the pause so that jobs holding an older slot inside it give
-- the slot up (see check). A 429 (escalate = '1') adds a strike unless it answers a request sent
-- during the current pause (a burst of refusals is one strike), and the pause grows with the
-- strikes: base, 2 base, 4 base... up to cap. Strikes are forgotten after twice the pause without
-- a new one. Returns {resume µs, now µs}.
local pause_us = tonumber(asked_us)
local paused = tonumber(redis.call('GET', pause_key) or '0')
if escalate == '1' then
  local strikes = tonumber(redis.call('GET', strikes_key) or '0')
  if now >= paused then strikes = strikes + 1 end
  local growing = math.min(tonumber(cap_us), tonumber(base_us) * 2 ^ math.min(strikes - 1, 40))
  if growing > pause_us then pause_us = growing end
  redis.call('SET', strikes_key, strikes, 'PX', math.ceil(2 * pause_us / 1000) + 1000)
end
local resume = now + pause_us
local ttl = math.ceil(pause_us / 1000) + 1000
local target = resume + tonumber(tolerance)
local tat = tonumber(redis.call('GET', rate_schedule) or '0')
if tat < target then
  redis.call('SET', rate_schedule, string.format('%d', target), 'PX', ttl)
end
if paused < resume then
  redis.call('SET', pause_key, string.format('%d', resume), 'PX', ttl)
else
  resume = paused
end
return {resume, now}

--! script pace
-- Called after a send: the recipient's interval counts from when the send really happened.
local next_allowed = now + tonumber(interval)
if tonumber(redis.call('GET', recipient) or '0') < next_allowed then
  redis.call('SET', recipient, string.format('%d', next_allowed),
              'PX', math.ceil(tonumber(interval) / 1000) + 1000)
end
return next_allowed

--! script check
-- Returns {now_us, paused_until_us}. Reads only: no replicate_commands() needed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return {now, tonumber(redis.call('GET', pause_key) or '0')}
