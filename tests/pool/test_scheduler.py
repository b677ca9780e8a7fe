"""The fair queue on its own: order across owners, predicates, removal, positions."""

from __future__ import annotations

from nst_engine.pool.scheduler import FairQueue


def drain(queue: FairQueue[str]) -> list[str]:
    order = []
    while (item := queue.pop()) is not None:
        order.append(item)
    return order


def test_one_owner_is_first_in_first_out() -> None:
    queue: FairQueue[str] = FairQueue()
    for item in ("a1", "a2", "a3"):
        queue.push(item, "a")
    assert drain(queue) == ["a1", "a2", "a3"]


def test_owners_take_turns_so_a_single_job_is_not_starved() -> None:
    queue: FairQueue[str] = FairQueue()
    for item in ("a1", "a2", "a3"):
        queue.push(item, "a")
    queue.push("b1", "b")
    for item in ("c1", "c2"):
        queue.push(item, "c")
    assert list(queue) == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert [queue.position(item) for item in ("a1", "b1", "a3")] == [1, 2, 6]
    assert drain(queue) == ["a1", "b1", "c1", "a2", "c2", "a3"]


def test_an_owner_already_served_waits_behind_a_newcomer() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a1", "a")
    queue.push("a2", "a")
    assert drain(queue) == ["a1", "a2"]
    queue.push("a3", "a")
    queue.push("b1", "b")
    assert list(queue) == ["b1", "a3"]


def test_an_owner_returning_after_others_were_served_is_not_penalised() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a1", "a")
    assert queue.pop() == "a1"
    for item in ("b1", "b2", "b3"):
        queue.push(item, "b")
    assert queue.pop() == "b1"
    assert queue.pop() == "b2"
    queue.push("a2", "a")
    assert list(queue) == ["a2", "b3"]


def test_pop_skips_items_the_predicate_refuses_without_reordering_them() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("big", "a")
    queue.push("small", "b")
    assert queue.pop(lambda item: item != "big") == "small"
    assert queue.pop(lambda item: item != "big") is None
    assert list(queue) == ["big"]


def test_remove_takes_an_item_out_and_moves_the_others_up() -> None:
    queue: FairQueue[str] = FairQueue()
    for item, owner in (("a1", "a"), ("b1", "b"), ("c1", "c")):
        queue.push(item, owner)
    assert queue.remove("b1")
    assert not queue.remove("b1")
    assert "b1" not in queue
    assert len(queue) == 2
    assert queue.position("c1") == 2
    assert queue.position("b1") == 0


def test_a_job_put_back_at_the_front_leaves_before_everything_queued() -> None:
    queue: FairQueue[str] = FairQueue()
    for item, owner in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        queue.push(item, owner)
    assert queue.pop() == "a1"
    queue.push_front("lost", "c")
    assert queue.position("lost") == 1
    assert drain(queue) == ["lost", "b1", "a2"]
