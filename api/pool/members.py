"""The pool's members in a request: create-site takes one, the end of its creation lets the row go; the pool's
state as `/health?deep=1` and `proxmoxwp pool status` show it, and whether the keeper keeps it filled.

A member is taken with one conditional UPDATE (`ready` → `claimed`, guarded by its state), so two creations that
race for the last member get it once: the loser sees no row changed and tries the next member, or makes its
container anew. Nothing here talks to Proxmox VE; the keeper (api/pool/keeper.py) does, outside requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from api.runtime import Runtime

from api.inventory import Plan, PoolSettings
from api.models import PoolControl, PoolMember

READY, CLAIMED, REMOVING = "ready", "claimed", "removing"
# members tried when others take the ones seen first; past that the site makes its own container
CLAIM_TRIES = 3


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claimed:
    vmid: int
    node: str


def fits(pool: PoolSettings, plan: Plan) -> bool:
    """A member can become a site of `plan`: its disk only grows, so the plan's must be at least the member's."""
    return pool.plan is not None and plan.disk_gb >= pool.plan.disk_gb


def claim(session: Session, pool: PoolSettings, image: str, plan: Plan, node: str | None, service_id: int):
    """Take a ready member of the current image for the service (on `node`, when placement chose one). Claimed, or
    None when none is left (the site then gets a container made for it)."""
    if pool.size == 0 or not fits(pool, plan):
        return None
    for _ in range(CLAIM_TRIES):
        candidate = select(PoolMember.vmid, PoolMember.node).where(PoolMember.state == READY, PoolMember.image == image)
        if node is not None:
            candidate = candidate.where(PoolMember.node == node)
        row = session.execute(candidate.order_by(PoolMember.vmid).limit(1)).first()
        if row is None:
            return None
        taken = session.execute(
            update(PoolMember)
            .where(PoolMember.vmid == row.vmid, PoolMember.state == READY)
            .values(state=CLAIMED, service_id=service_id, claimed_at=now())
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:
            return Claimed(row.vmid, row.node)
    return None


def release(session: Session, service_id: int) -> None:
    """The service's creation ended: the member it claimed is its container now, or was removed with the run's
    undo. Either way it is no longer the pool's."""
    session.execute(
        delete(PoolMember)
        .where(PoolMember.service_id == service_id, PoolMember.state == CLAIMED)
        .execution_options(synchronize_session=False)
    )


PAUSED = select(PoolControl.paused).where(PoolControl.id == 1)


def paused(runtime: Runtime) -> bool:
    with runtime.db.session() as session:
        return bool(session.scalar(PAUSED))


def ready_by_node(runtime: Runtime) -> dict[str, int]:
    """Ready members of the current golden image, per node."""
    with runtime.db.session() as session:
        return dict(
            session.execute(
                select(PoolMember.node, func.count())
                .where(PoolMember.state == READY, PoolMember.image == runtime.pool_image)
                .group_by(PoolMember.node)
            ).all()
        )


def set_paused(runtime: Runtime, value: bool) -> None:
    def work(session) -> None:
        control = session.get(PoolControl, 1)
        if control is None:
            session.add(PoolControl(id=1, paused=value, changed_at=now()))
        else:
            control.paused, control.changed_at = value, now()

    runtime.db.write(work)


def status(runtime: Runtime) -> dict:
    """The pool as the API knows it: settings, whether it is paused, and the members by state and node."""
    pool = runtime.inventory.pool
    with runtime.db.session() as session:
        by = (PoolMember.state, PoolMember.node)
        rows = session.execute(select(*by, func.count()).group_by(*by)).all()
        is_paused = bool(session.scalar(PAUSED))
    counts: dict[str, dict[str, int]] = {}
    for state, node, count in rows:
        counts.setdefault(state, {})[node] = count
    return {
        "size": pool.size,
        "plan": pool.plan_name if pool.size else None,
        "image": pool.ostemplate if pool.size else None,
        "paused": is_paused,
        "ready": counts.get(READY, {}),
        "claimed": counts.get(CLAIMED, {}),
        "removing": counts.get(REMOVING, {}),
    }


def listing(runtime: Runtime) -> list[dict]:
    with runtime.db.session() as session:
        rows = session.scalars(select(PoolMember).order_by(PoolMember.node, PoolMember.vmid)).all()
        return [
            {
                "vmid": row.vmid,
                "node": row.node,
                "ip": row.ip,
                "state": row.state,
                "service_id": row.service_id,
                "made_at": row.made_at.isoformat(),
                "checked_at": row.checked_at.isoformat(),
            }
            for row in rows
        ]
