"""What operators do with dead letters, whoever asks (``zapi-queue dead``, the console): choose
them by filters, and replay them by one rule.

The rule: a letter with a send of unknown outcome (``ambiguous_attempts``: a timeout or a reset
after the request left) may already have reached the customer, so it is replayed only when the
operator says so explicitly (``--force``, the console's second confirmation); otherwise it is
refused and kept for that decision. A replayed letter is enqueued again (same task, body and
kwargs, so the same idempotency key) and then removed from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tasks.state.deadletter import DeadLetter, DeadLetterStore

#: Enqueues a letter's job again; returns the new job id.
Send = Callable[[DeadLetter], str]


@dataclass(frozen=True, slots=True)
class Filters:
    """Which letters: each filter given must match (``contains``: the error's text, any case;
    ``since``/``until``: the failure time, epoch seconds, ``until`` excluded)."""

    task: str | None = None
    error_type: str | None = None
    contains: str | None = None
    instance: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def any(self) -> bool:
        filters = (self.task, self.error_type, self.contains, self.instance, self.since, self.until)
        return any(v is not None for v in filters)

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.task is None or letter.task == self.task)
            and (self.error_type is None or letter.error_type == self.error_type)
            and (self.contains is None or self.contains.lower() in letter.error.lower())
            and (self.instance is None or letter.instance == self.instance)
            and (self.since is None or letter.failed_at >= self.since)
            and (self.until is None or letter.failed_at < self.until)
        )

    def apply(self, letters: Iterable[DeadLetter]) -> Iterator[DeadLetter]:
        """The matching letters, lazily: a caller that stops early reads no further."""
        return (letter for letter in letters if self.matches(letter))


def refusal(letter: DeadLetter) -> str | None:
    """Why ``letter`` is not replayed without an explicit say-so, or None when it may be."""
    if not letter.ambiguous_attempts:
        return None
    return (
        f"refused {letter.job_id}: {letter.ambiguous_attempts} send(s) of unknown outcome "
        "(a timeout or reset after the request left): it may already have reached the "
        "customer: replaying may send it twice; use --force"
    )


def replay(letter: DeadLetter, store: DeadLetterStore, send: Send, *, force: bool) -> str | None:
    """Enqueue ``letter`` again and remove it from ``store``; returns the new job id, or None
    when the rule refuses it (it stays in the store)."""
    if refusal(letter) is not None and not force:
        return None
    new_id = send(letter)
    store.remove([letter.job_id])
    return new_id
