"""When the pool keeper starts a pass (api/pool/schedule.py): periodically, soon after a node is short, and not while
a site is being created, unless that has gone on too long."""

from __future__ import annotations

from api.pool.schedule import REFILL_GAP_SECONDS, YIELD_SECONDS, KeeperSchedule


class World:
    def __init__(self) -> None:
        self.wanted, self.short, self.creating = True, False, False

    def schedule(self, pool_seconds: float = 300.0) -> KeeperSchedule:
        return KeeperSchedule(pool_seconds, lambda: self.wanted, lambda: self.short, lambda: self.creating)


def test_the_first_pass_is_at_once_and_the_next_after_the_period():
    world = World()
    schedule = world.schedule()
    assert schedule.due(0.0)
    schedule.ran(1.0, made=1)
    assert not schedule.due(200.0)
    assert schedule.due(301.0)


def test_no_pass_when_the_pool_is_off_and_empty():
    world = World()
    world.wanted = False
    assert not world.schedule().due(0.0)


def test_a_short_node_is_filled_soon_but_not_while_a_site_is_created():
    world = World()
    schedule = world.schedule()
    schedule.ran(0.0, made=1)
    world.short = True
    assert not schedule.due(REFILL_GAP_SECONDS[0] - 1), "not sooner than the gap"
    world.creating = True
    assert not schedule.due(20.0), "the creation that took the member has the CPUs first"
    assert not schedule.due(40.0)
    world.creating = False
    assert schedule.due(45.0), "the refill starts once the creation has ended"


def test_a_stream_of_creations_holds_the_refill_back_only_so_long():
    world = World()
    schedule = world.schedule()
    schedule.ran(0.0, made=1)
    world.short = world.creating = True
    assert not schedule.due(20.0)
    assert not schedule.due(20.0 + YIELD_SECONDS - 1)
    assert schedule.due(20.0 + YIELD_SECONDS)


def test_a_refill_that_made_nothing_waits_longer_before_the_next():
    world = World()
    schedule = world.schedule()
    schedule.ran(0.0, made=1)
    world.short = True
    assert schedule.due(REFILL_GAP_SECONDS[0])
    schedule.ran(REFILL_GAP_SECONDS[0], made=0)  # the node had no room
    assert not schedule.due(2 * REFILL_GAP_SECONDS[0] + 1)
    assert schedule.due(REFILL_GAP_SECONDS[0] + REFILL_GAP_SECONDS[1])
    schedule.ran(REFILL_GAP_SECONDS[0] + REFILL_GAP_SECONDS[1], made=1)
    assert schedule.due(2 * REFILL_GAP_SECONDS[0] + REFILL_GAP_SECONDS[1])
