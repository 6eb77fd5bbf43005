"""How a dead letter is enqueued again, for ``zapi-queue dead replay`` and the console."""

from __future__ import annotations

from tasks.dead_letters import Send
from tasks.state.deadletter import DeadLetter


def sender() -> Send:
    """Enqueue a letter's job again through the worker's Celery app (its broker, its transport:
    the message is published as a producer's would be); returns the new job id."""
    from worker.celery_app import app

    def send(letter: DeadLetter) -> str:
        return str(app.send_task(letter.task, args=[letter.body], kwargs=letter.kwargs).id)

    return send
