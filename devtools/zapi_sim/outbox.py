"""What leaves the fake Z-API for the phone: at once, or through the instance's own queue.

Z-API (FACTS.md, "Z-API's own queue") accepts a send for a disconnected phone into the
instance's queue, keeps up to :data:`QUEUE_CAPACITY` messages there, and fires them all by
itself on reconnect, in order, 1-3 s apart. The fake does the same, scaled down
(``queue_spacing`` seconds between two firings, the first at once): while an instance is
disconnected, or while its queue still drains, an accepted send waits at the queue's end; a
connected instance with nothing queued delivers at once. Firing a send plays its callbacks
(``Send.play``: what an immediate send plays) and records it in :meth:`Outbox.fired`, what
the customer got, with or without a webhook URL. A message deleted from the queue never fires.

One lock orders everything: the connection of an instance is changed under it too
(:meth:`Outbox.set_connected`), so that a send cannot slip into a queue nobody drains.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from devtools.zapi_sim.switches import NOT_CONNECTED, Switches

#: How many messages Z-API keeps for a disconnected phone before it refuses new ones.
QUEUE_CAPACITY = 1000


class _Spacing(Protocol):
    """The set-up the outbox reads live (a test may change it on a running fake)."""

    queue_spacing: float


@dataclass(frozen=True)
class Send:
    """One accepted send: its instance, route (the path's last part), body and reply, when it
    was accepted (epoch seconds), and what firing it plays (its callbacks)."""

    instance_id: str
    route: str
    body: dict[str, Any]
    reply: dict[str, str]
    play: Callable[[], None] = field(repr=False, compare=False)
    accepted_at: float = field(default_factory=time.time)

    @property
    def zaap_id(self) -> str:
        return self.reply["zaapId"]

    @property
    def message_id(self) -> str:
        return self.reply["messageId"]


@dataclass(frozen=True)
class Queued:
    """A send waiting in its instance's queue; ``seq`` orders the queue (and its paging)."""

    seq: int
    send: Send


@dataclass(frozen=True)
class Fired:
    """A message delivered to the phone: at once, or fired from the queue at ``fired_at``."""

    instance_id: str
    route: str
    message_id: str
    zaap_id: str
    body: dict[str, Any]
    fired_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "route": self.route,
            "messageId": self.message_id,
            "zaapId": self.zaap_id,
            "body": self.body,
            "fired_at": self.fired_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fired:
        """Back from :meth:`as_dict` (a fake in another process: devtools/remote_sim.py)."""
        return cls(
            data["instance_id"],
            data["route"],
            data["messageId"],
            data["zaapId"],
            data["body"],
            data["fired_at"],
        )


class Outbox:
    """Each instance's queue, the threads that drain them, and the record of what fired."""

    def __init__(self, config: _Spacing, switches: Switches) -> None:
        self._config = config
        self._switches = switches
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._queues: dict[str, collections.deque[Queued]] = {}
        self._draining: set[str] = set()
        self._fired: list[Fired] = []
        #: Bumped by reset(): a drain started before it stops at its next look.
        self._generation = 0
        self._closed = threading.Event()

    # -- sends ---------------------------------------------------------------------------------
    def accept(self, send: Send) -> bool:
        """Deliver ``send`` now, or queue it behind the others (its instance disconnected, or
        its queue draining); False when the queue is full and the send is refused."""
        instance = send.instance_id
        with self._lock:
            queue = self._queues.setdefault(instance, collections.deque())
            connected = self._connected(instance)
            if not connected or queue or instance in self._draining:
                if len(queue) >= QUEUE_CAPACITY:
                    return False
                queue.append(Queued(next(self._seq), send))
                if connected:
                    self._start_drain(instance)
                return True
        self._fire(send)
        return True

    def set_connected(self, instance_id: str, connected: bool, error: str = NOT_CONNECTED) -> None:
        """Change what ``GET .../status`` says of the instance; on connecting, fire its queue."""
        with self._lock:
            self._switches.set_connected(instance_id, connected, error)
            if connected and self._queues.get(instance_id):
                self._start_drain(instance_id)

    # -- the queue, as Z-API's queue routes show it -------------------------------------------
    def queued(self, instance_id: str, after: int = 0, limit: int | None = None) -> list[Queued]:
        """The instance's queue in firing order, from the first entry past ``after`` (a
        ``seq``), at most ``limit`` entries."""
        with self._lock:
            waiting = (q for q in self._queues.get(instance_id, ()) if q.seq > after)
            return list(itertools.islice(waiting, limit))

    def remove(self, instance_id: str, zaap_id: str) -> bool:
        """Take one message out of the queue (it will not fire); False if it is not there."""
        with self._lock:
            queue = self._queues.get(instance_id, collections.deque())
            for entry in queue:
                if entry.send.zaap_id == zaap_id:
                    queue.remove(entry)
                    return True
            return False

    def clear(self, instance_id: str) -> int:
        """Empty the instance's queue; how many messages it held."""
        with self._lock:
            queue = self._queues.pop(instance_id, collections.deque())
            return len(queue)

    def fired(self, instance_id: str | None = None) -> list[Fired]:
        """What reached the phone (of ``instance_id`` only, if given), in firing order."""
        with self._lock:
            found = list(self._fired)
        return [f for f in found if instance_id is None or f.instance_id == instance_id]

    def reset(self) -> None:
        """Forget every queue and what fired; a drain under way stops."""
        with self._lock:
            self._generation += 1
            self._queues.clear()
            self._draining.clear()
            self._fired.clear()

    def close(self) -> None:
        self._closed.set()

    # -- draining ------------------------------------------------------------------------------
    def _connected(self, instance_id: str) -> bool:
        return self._switches.connection(instance_id)[1] is None

    def _start_drain(self, instance_id: str) -> None:
        """Start the instance's drain unless one runs (the caller holds the lock)."""
        if instance_id in self._draining:
            return
        self._draining.add(instance_id)
        thread = threading.Thread(
            target=self._drain,
            args=(instance_id, self._generation),
            name=f"zapi-sim-queue-{instance_id}",
            daemon=True,
        )
        thread.start()

    def _drain(self, instance_id: str, generation: int) -> None:
        """Fire the queue's head, wait ``queue_spacing``, again, until the queue is empty or
        the instance disconnects; the wait after the last one keeps a send that arrives then
        spaced too."""
        while True:
            with self._lock:
                queue = self._queues.get(instance_id)
                if generation != self._generation:
                    return
                if not queue or not self._connected(instance_id):
                    self._draining.discard(instance_id)
                    return
                send = queue.popleft().send
            self._fire(send)
            if self._closed.wait(self._config.queue_spacing):
                return

    def _fire(self, send: Send) -> None:
        """Deliver ``send``: its callbacks on their way, then it counts as fired (so that a
        test that saw it fire can wait for its callbacks with ``drain_callbacks``)."""
        send.play()
        fired = Fired(
            send.instance_id, send.route, send.message_id, send.zaap_id, send.body, time.time()
        )
        with self._lock:
            self._fired.append(fired)
