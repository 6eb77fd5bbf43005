"""zapi-queue's own state in Redis: the connection, rate schedules, idempotency records and dead
letters. Every key is registered, with its TTL or cap and the setting behind it, in
tasks/state/keys.py; each store's Lua is a ``.lua`` file beside it (tasks/state/scripts.py)."""
