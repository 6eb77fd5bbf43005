"""zapi-queue's own state in Redis: the connection, rate schedules, idempotency records and dead
letters. Every key has a TTL or a cap, documented beside its prefix in the module that owns it."""
