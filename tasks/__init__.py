"""Order update tasks: schemas, the Z-API client, and the Celery tasks that tie them together."""
