-- One round trip where several would do (tasks/state/turns.py): these scripts compose the
-- libraries of orders.lua, idempotency.lua, ratelimit.lua and deliveries.lua. Every key and
-- argument is bound by name in the generated prelude (tasks/state/scripts.py): no offsets here.
--! library
-- After the claim: reserve the job's rate slot (unless interval is ''), and when the slot is now,
-- mark the send in flight and count it (counter: the sends counter's key). A slot that is not
-- granted (a held instance, a paced recipient) drops the claim just taken: the job is deferred.
-- Returns {claim}, {claim, slot} (the slot to wait for, or not granted) or {claim, slot, marked}.
local function start(counter, wait_lease, interval, tolerance, recipient, hold_look,
                     owner, send_lease, sent_ttl, second, counter_ttl)
  local claimed = claim(owner, wait_lease)
  if claimed[1] ~= 0 or interval == '' then return {claimed} end
  local slot = reserve_slot(now, interval, tolerance, recipient, hold_look)
  if slot[1] ~= 1 then
    redis.call('DEL', idem_claim)
    return {claimed, slot}
  end
  if slot[2] > now then return {claimed, slot} end
  return {claimed, slot, mark_sent(owner, send_lease, sent_ttl, counter, second, counter_ttl)}
end

--! script enter_and_start
-- Returns {entry} when the job must wait or settle, {entry, start's answer} at its turn, and
-- {{3, newer job, its state}} when a newer update supersedes it (newer_of, orders.lua): it
-- leaves the line. A job whose key was delivered, or whose earlier send may have reached Z-API
-- (ambiguous) or is in flight, is never superseded: it may have been sent already.
local entered = enter(enter_job, enter_position, enter_settles, enter_ttl, enter_waited_long,
                      enter_absence_us, enter_settle_us)
local may_be_sent = redis.call('EXISTS', idem_reply) == 1
  or tonumber(redis.call('HGET', idem_sent, 'ambiguous') or '0') > 0
  or redis.call('HEXISTS', idem_sent, 'inflight') == 1
local newer = newer_of(enter_job, supersede_as, may_be_sent and '0' or supersede_may,
                       enter_absence_us)
if newer then
  forget(enter_job)
  return {{3, newer[1], newer[2]}}
end
if entered[1] ~= 0 then return {entered} end
return {entered, start(counter, wait_lease, reserve_interval, reserve_tolerance,
                       reserve_recipient_interval, reserve_hold_look, mark_owner, mark_lease_ms,
                       mark_ttl, mark_second, mark_counter_ttl)}

--! script start_alone
-- enter_and_start without an order's line (ordering off).
return start(counter, wait_lease, reserve_interval, reserve_tolerance, reserve_recipient_interval,
             reserve_hold_look, mark_owner, mark_lease_ms, mark_ttl, mark_second, mark_counter_ttl)

--! script record_and_delivered
-- The reply, the order's new state (state '': the job names no order), its snapshot ('' when the
-- book has it: then message_index is not written) or, for an order message (order_message: its
-- messageId, else ''), the link from the order's key to it; and the message's delivery record.
-- Returns {link's answer (the burial fields when the message's failure was reported first; else
-- empty), the reply as stored when it is not the one given (idempotency's record), else ''}.
local earlier = record(record_owner, record_reply, record_ttl)
if state ~= '' then
  delivered(delivered_job, delivered_status, delivered_payment, delivered_seq, delivered_ttl)
end
if snapshot ~= '' then
  redis.call('HSETNX', state, 'snapshot', snapshot)
  redis.call('SET', message_index, order_request_id, 'NX', 'EX', delivered_ttl)
end
-- The link is the stored reply's: another execution's, when it recorded first, stands.
local ours = earlier == ''
if not ours then
  local stored = cjson.decode(earlier)
  ours = (stored.reply or stored).zaapId == link_zaap_id
end
if order_message ~= '' and state ~= '' and ours then
  redis.call('HSET', state, 'messageId', order_message, 'zaapId', link_zaap_id,
             'orderJob', delivered_job, 'orderSentAt', string.format('%.6f', now / 1000000))
end
-- The job's steps so far, and its place among its order's jobs (history.lua).
tell(tell_steps, tell_head, tell_job, tell_position, tell_ttl, tell_story_ttl)
return {link(link_job, link_body, link_zaap_id, link_linked_at, link_ttl) or {}, earlier}
