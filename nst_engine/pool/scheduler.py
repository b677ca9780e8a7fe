"""The pool's waiting room: a bounded, owner-fair queue.

Fairness is virtual-round scheduling: each job gets a round number one past its owner's
previous job, but never earlier than the round now being served. Jobs leave in round
order (ties by arrival), so every owner with work waiting gets one job per round and a
newcomer's first job overtakes the third job of someone who submitted three at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(order=True)
class _Entry(Generic[T]):
    round: int
    arrival: int
    owner: str = field(compare=False)
    item: T = field(compare=False)


class FairQueue(Generic[T]):
    """Round-robin across owners; ``pop`` takes the first item in fair order that a predicate accepts."""

    def __init__(self) -> None:
        self._entries: list[_Entry[T]] = []
        self._last_round: dict[str, int] = {}
        self._serving_round = 0
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, item: object) -> bool:
        return any(entry.item is item for entry in self._entries)

    def __iter__(self) -> Iterator[T]:
        """Items in the order they would leave if every one could run anywhere."""
        return (entry.item for entry in sorted(self._entries))

    def push(self, item: T, owner: str) -> None:
        """Queue ``item`` behind ``owner``'s earlier items, interleaved with other owners'."""
        round_ = max(self._serving_round, self._last_round.get(owner, 0) + 1)
        self._last_round[owner] = round_
        self._entries.append(_Entry(round_, next(self._arrivals), owner, item))

    def push_front(self, item: T, owner: str) -> None:
        """Queue ``item`` ahead of everything else (a job whose run was lost through no fault of its own)."""
        self._entries.append(_Entry(self._serving_round, -next(self._arrivals), owner, item))

    def pop(self, accept: Callable[[T], bool] = lambda item: True) -> T | None:
        """Remove and return the first item in fair order for which ``accept`` is true, or None."""
        for entry in sorted(self._entries):
            if accept(entry.item):
                self._entries.remove(entry)
                self._serving_round = max(self._serving_round, entry.round)
                self._forget_idle_owners()
                return entry.item
        return None

    def remove(self, item: T) -> bool:
        """Take ``item`` out of the queue; False when it was not queued."""
        for entry in self._entries:
            if entry.item is item:
                self._entries.remove(entry)
                self._forget_idle_owners()
                return True
        return False

    def position(self, item: T) -> int:
        """1-based place of ``item`` in fair order; 0 when it is not queued."""
        for index, queued in enumerate(self, start=1):
            if queued is item:
                return index
        return 0

    def _forget_idle_owners(self) -> None:
        # An owner with nothing queued whose last round is behind the one being served would
        # get the serving round anyway, so the entry only costs memory. An owner whose last
        # round *is* the serving round must be kept: its next job belongs to the next round.
        waiting = {entry.owner for entry in self._entries}
        for owner in [o for o, r in self._last_round.items() if o not in waiting and r < self._serving_round]:
            del self._last_round[owner]
