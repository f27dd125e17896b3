"""When a worker's pool keeper starts a pass (docs/pool.md, "The keeper").

A pass is due every PROXMOXWP_POOL_SECONDS, and soon after a node is short of members (a site took one). A pass makes
and checks containers, which costs the node CPU and the controller a playbook: while a site is being created, a
pass would slow down the very creation the pool is there to speed up. So the keeper waits while creations run, but
never longer than YIELD_SECONDS, so that a steady stream of creations cannot keep the pool empty for good.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# How often the keeper looks whether a pass is due (a look is a few small queries).
LOOK_SECONDS = 5.0
# The least time between passes started because a node is short, and after such a pass that could make none (a node
# without room), so that a full node is not retried every few seconds.
REFILL_GAP_SECONDS = (10.0, 120.0)
# The longest a due pass waits for running creations to end.
YIELD_SECONDS = 120.0


@dataclass
class KeeperSchedule:
    """The keeper's clock: `due(now)` says whether to start a pass now, `ran(now, ...)` records one that ran."""

    pool_seconds: float
    wanted: Callable[[], bool]  # the pool is on, or has members to drain
    short: Callable[[], bool]  # a node lacks members
    creating: Callable[[], bool]  # a site's creation is queued or running
    last: float | None = None
    gap: float = REFILL_GAP_SECONDS[0]
    waiting_since: float | None = None
    for_shortfall: bool = False  # the pass due now is only due because a node is short

    def due(self, now: float) -> bool:
        since = None if self.last is None else now - self.last
        if not self.wanted():
            return False
        periodic = since is None or since >= self.pool_seconds
        self.for_shortfall = not periodic and since >= self.gap and self.short()
        if not (periodic or self.for_shortfall):
            return False
        if self.creating():
            if self.waiting_since is None:
                self.waiting_since = now
            if now - self.waiting_since < YIELD_SECONDS:
                return False
        self.waiting_since = None
        return True

    def ran(self, now: float, made: int) -> None:
        """A pass ran and made `made` members."""
        self.last = now
        self.gap = REFILL_GAP_SECONDS[1 if self.for_shortfall and not made else 0]
