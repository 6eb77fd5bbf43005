"""The Redis keys and Lua scripts of reliable fetch (worker/transport.py explains the design).

Every script starts with ``LIBRARY`` and takes the same first six keys: leases, sources, owners,
unacked, holders, unacked index. Messages given back go to the head of their queue (the end
``BLMOVE`` takes from), the oldest first.

Bounds of the keys (beside kombu's own ``unacked`` hash and index, bounded by the jobs in flight):

* ``LEASES_KEY``, ``SOURCES_KEY``, ``OWNERS_KEY``: one entry per live channel's processing list;
  a list whose lease ran out is forgotten by the next sweep once it holds nothing.
* processing lists (``LEASES_KEY.<queue>.<channel>``): at most the messages one fetch moves in
  (``MAX_TAKE``).
* ``HOLDERS_KEY``: one entry per unacked job fetched reliably, dropped at its ack or restore.
* owned sets (``OWNED_PREFIX<channel>``): a channel's unacked jobs; deleted with the channel.
* ``REJECTED_KEY``: capped at ``REJECTED_MAX`` items, the newest kept.
"""

from __future__ import annotations

from typing import Any

from tasks.state.keys import (
    HOLDERS_KEY,
    LEASES_KEY,
    MAX_TAKE,
    OWNED_PREFIX,
    OWNERS_KEY,
    REJECTED_KEY,
    REJECTED_MAX,
    SOURCES_KEY,
)
from tasks.state.scripts import Library, Script

# The keys (names and bounds registered in tasks/state/keys.py): LEASES_KEY, a sorted set,
# processing list -> lease deadline (Redis clock, seconds); SOURCES_KEY, a hash, processing list
# -> the queue list its messages came from; OWNERS_KEY, a hash, processing list -> its channel's
# owned set (the delivery tags it holds unacked); HOLDERS_KEY, a hash, delivery tag -> the owned
# set of the channel holding it now (acks and restores check it, so a channel that stalled past
# its lease cannot ack or re-queue a job another one took over); REJECTED_KEY, a list of fetched
# items that were not kombu messages (not JSON, no delivery tag), kept for a look, at most
# REJECTED_MAX; OWNED_PREFIX<channel>, the owned sets; MAX_TAKE, the most messages one fetch
# moves (TAKE), bounded by the free prefetch slots too.
__all__ = [
    "FETCH_SCRIPTS",
    "HOLDERS_KEY",
    "LEASES_KEY",
    "LIBRARY",
    "MAX_TAKE",
    "OWNED_PREFIX",
    "OWNERS_KEY",
    "REJECTED_KEY",
    "REJECTED_MAX",
    "SCRIPTS",
    "SOURCES_KEY",
    "TAKE",
    "TAKE_SCRIPT",
    "library_keys",
]

_LUA = ("worker", "fetch_scripts.lua")
#: The functions every script but TAKE composes, and the six keys they share (library_keys).
LIBRARY = Library.of(*_LUA, keys=("leases", "sources", "owners", "unacked", "holders", "index"))
_RENEWAL: dict[str, Any] = {
    "keys": (),
    "rest_keys": "processing_lists",
    "args": ("lease", "owned", "only_tracked", "may_take_over"),
    "rest_args": "queues",
}
#: Each script by name, its keys and arguments named (worker/fetch_scripts.lua documents them).
#: The transport calls them by these names (``FETCH_SCRIPTS[name].register(client)``). CLAIM's
#: ``lines`` are each message's line and jobs keys, then the lower-priority lists (its Lua finds
#: them after the ``count`` pairs).
_OPTIONS: dict[str, dict[str, Any]] = {
    "prepare": {
        "keys": ("processing", "queue", "owned"),
        "rest_keys": "lower",
        "args": ("lease", "may_take_over"),
    },
    "claim": {
        "keys": ("processing", "queue", "owned"),
        "rest_keys": "lines",
        "args": ("lease", "count"),
        "rest_args": "messages",
    },
    "ack": {"keys": ("owned",), "args": ("tag",)},
    "reject": {"keys": ("processing", "rejected"), "args": ("item", "most")},
    "renew": _RENEWAL,
    "sweep": _RENEWAL,
    "release": {"keys": ("processing", "queue", "owned"), "args": ("keep",)},
}
FETCH_SCRIPTS = {
    name: Script.of(*_LUA, name, libraries=[LIBRARY], **options)
    for name, options in _OPTIONS.items()
}
#: The scripts' whole text (a test that registers one itself).
SCRIPTS = {name: script.text for name, script in FETCH_SCRIPTS.items()}

#: The fetch that follows a claim which saw the queue hold more: without blocking, moves up to
#: ``most`` messages from the queue into the processing list (as BLMOVE does, one at a time) and
#: returns them, oldest first, for one CLAIM of them all. No library: it only moves. Sent by the
#: transport on its fetch connection, whose reply the event loop reads (worker/fetch_channel.py).
TAKE_SCRIPT = Script.of(*_LUA, "take", keys=("queue", "processing"), args=("most",))
TAKE = TAKE_SCRIPT.text


def library_keys(*, unacked: str, index: str) -> dict[str, str]:
    """The six keys every script but TAKE starts with, by name: ours, and kombu's ``unacked``
    hash and its index (a channel's, from its transport options)."""
    return {
        "leases": LEASES_KEY,
        "sources": SOURCES_KEY,
        "owners": OWNERS_KEY,
        "unacked": unacked,
        "holders": HOLDERS_KEY,
        "index": index,
    }
