-- The order book (tasks/state/book.py documents the keys).

--! script save_first
-- The snapshot, unless the book already has the order (the first snapshot stays). Returns 1
-- when stored, 0 when the book already had the order.
if redis.call('HSETNX', state, 'snapshot', snapshot) == 0 then return 0 end
redis.call('EXPIRE', state, ttl)
redis.call('SET', message_index, order_request_id, 'NX', 'EX', ttl)
return 1
