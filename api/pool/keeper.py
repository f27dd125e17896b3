"""The pool keeper: what the workers do in the background to keep the warm pool ready (docs/pool.md).

One pass, under a lock shared by every worker so that passes never overlap:
1. check: playbooks/pool_check.yml reports every member the cluster has, ready or not and why;
2. the rows follow: a ready member is checked again, one that is not ready is marked `removing` (a conditional
   update: a creation that took it first keeps it, and its own hand-over refuses a broken member), a row whose
   container is gone goes, a ready member the rows do not know (a pass cut off after making it) is taken in;
3. drain: playbooks/pool_drain.yml removes what is `removing`, and everything when the pool is paused or off;
4. fill: playbooks/pool_fill.yml makes members on each node short of `proxmoxwp_pool.size`, as many as fit while a
   site of the largest plan still fits beside them, so the pool never takes a node's last room from customers.
The playbooks run as a job's do (a private directory, the inventory, the workers' lock broker for addresses).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, update

from api.config import ConfigError
from api.errors import ApiError
from api.inventory import PoolSettings
from api.jobs import locks
from api.jobs.runner import PlaybookRun
from api.models import UNFINISHED, Job, PoolMember
from api.placement import GIB, MIB
from api.pool.members import CLAIMED, READY, REMOVING, now, paused, ready_by_node
from api.runtime import Runtime
from api.waiting import TimedOut, wait_for

log = logging.getLogger(__name__)

LOCK = "pool-keeper"
LEASE_SECONDS = 60.0
TIMEOUTS = {"pool_check.yml": 900, "pool_drain.yml": 900, "pool_fill.yml": 1800}


@dataclass
class PassResult:
    """What one pass did; `ran` is False when another keeper's pass was under way."""

    ran: bool = True
    checked: int = 0
    removed: list[int] = field(default_factory=list)
    made: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "ran": self.ran,
            "checked": self.checked,
            "removed": self.removed,
            "made": self.made,
            "failed": self.failed,
            "problems": self.problems,
        }


def shortfall(runtime: Runtime) -> int:
    """Members the allowed nodes lack (no network: the rows and the inventory); 0 when the pool is off or paused."""
    pool = runtime.inventory.pool
    try:
        config = runtime.placer.config
    except ConfigError:  # the pass says what is wrong with the settings; a look says nothing
        return 0
    if not pool.size or config is None or paused(runtime):
        return 0
    ready = ready_by_node(runtime)
    return sum(max(pool.size - ready.get(node, 0), 0) for node in config.nodes)


CREATING = select(Job.id).where(Job.kind == "create", Job.state.in_(UNFINISHED)).limit(1)


def creating(runtime: Runtime) -> bool:
    """A site's creation is queued or running (the keeper lets it have the CPUs first)."""
    with runtime.db.session() as session:
        return session.execute(CREATING).first() is not None


def has_members(runtime: Runtime) -> bool:
    with runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(PoolMember)) > 0


class Keeper:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.holder = f"pool-keeper-{uuid.uuid4().hex[:12]}"

    # ---- one pass ------------------------------------------------------------------------------------

    def run(self, wait: float = 0.0) -> PassResult:
        """One pass; `wait` seconds for another keeper's pass to end first (else ran=False at once)."""
        with self._lease(wait) as held:
            if not held:
                return PassResult(ran=False)
            return self._pass()

    def _pass(self) -> PassResult:
        result = PassResult()
        pool = self.runtime.inventory.pool
        keep = pool.size > 0 and not paused(self.runtime)
        report = self._playbook("pool_check.yml", {}, result)
        if report is None:
            return result
        found = [m for m in report.get("pool_members") or [] if isinstance(m, dict) and "vmid" in m]
        result.checked = len(found)
        remove = self._follow(found, keep)
        if remove:
            drained = self._playbook("pool_drain.yml", {"pool_vmids": remove}, result)
            if drained is not None:
                result.removed = sorted(int(v) for v in drained.get("pool_removed") or [])
                self._forget(remove)
        if keep:
            self._fill(pool, found, remove, result)
        return result

    def _follow(self, found: list[dict], keep: bool) -> list[int]:
        """Make the rows follow the check; the vmids to remove."""
        image = self.runtime.pool_image
        reported = {int(m["vmid"]): m for m in found}
        remove: list[int] = []

        def work(session) -> None:
            rows = {row.vmid: row for row in session.scalars(select(PoolMember))}
            for vmid, row in rows.items():
                if vmid not in reported and row.state != CLAIMED:
                    session.delete(row)  # gone (removed by hand, or its node's disk with it)
            for vmid, member in reported.items():
                row = rows.get(vmid)
                ready = bool(member.get("ready")) and member.get("image") == image and keep
                if row is None:
                    if ready:  # made by a pass that was cut off before it wrote the row
                        session.add(PoolMember(vmid=vmid, node=member["node"], ip=member.get("ip"), image=image))
                    else:
                        remove.append(vmid)
                elif row.state == READY and ready:
                    row.checked_at, row.node, row.ip = now(), member["node"], member.get("ip")
                elif row.state in (READY, REMOVING):
                    # a creation that takes it meanwhile keeps it; its hand-over refuses a member that is not fit
                    marked = session.execute(
                        update(PoolMember)
                        .where(PoolMember.vmid == vmid, PoolMember.state.in_((READY, REMOVING)))
                        .values(state=REMOVING)
                        .execution_options(synchronize_session=False)
                    )
                    if marked.rowcount == 1:
                        remove.append(vmid)
                        log.info("pool member %s is removed: %s", vmid, member.get("reason") or "the pool is off")

        self.runtime.db.write(work)
        return sorted(remove)

    def _forget(self, vmids: list[int]) -> None:
        def work(session) -> None:
            session.execute(
                delete(PoolMember)
                .where(PoolMember.vmid.in_(vmids), PoolMember.state == REMOVING)
                .execution_options(synchronize_session=False)
            )

        self.runtime.db.write(work)

    def _fill(self, pool: PoolSettings, found: list[dict], removed: list[int], result: PassResult) -> None:
        image = self.runtime.pool_image
        try:
            rooms = self.runtime.placer.rooms()
        except ApiError as exc:
            result.problems.append(f"the cluster's room could not be read: {exc.message}")
            return
        if rooms is None:
            result.problems.append("the inventory has no Proxmox VE connection (proxmoxwp_pve_api)")
            return
        ready = ready_by_node(self.runtime)
        largest = max(self.runtime.inventory.plans.values(), key=lambda p: (p.memory_mb, p.disk_gb))
        assert pool.plan is not None
        for room in rooms:
            if room.unusable is not None:
                continue
            short = pool.size - ready.get(room.node, 0)
            fitting = 0
            while fitting < short and room.fits(
                (fitting + 1) * pool.plan.memory_mb * MIB + largest.memory_mb * MIB,
                (fitting + 1) * pool.plan.disk_gb * GIB + largest.disk_gb * GIB,
            ):
                fitting += 1
            if fitting < short:
                log.info("pool: %s has room for %d of the %d members it lacks", room.node, fitting, short)
            if fitting == 0:
                continue
            # the module counts every member of the image on the node, including those given to creations that
            # have not taken them over yet: ask for those on top
            there = sum(
                1 for m in found if m["node"] == room.node and m.get("image") == image and int(m["vmid"]) not in removed
            )
            stats = self._playbook("pool_fill.yml", {"pool_node": room.node, "pool_count": there + fitting}, result)
            if stats is None:
                continue
            made = [m for m in stats.get("pool_made") or [] if isinstance(m, dict) and m.get("vmid")]
            result.failed.update({str(k): str(v) for k, v in (stats.get("pool_failed") or {}).items()})

            def work(session, made=made, node=room.node) -> None:
                for member in made:
                    session.merge(PoolMember(vmid=int(member["vmid"]), node=node, ip=member.get("ip"), image=image))

            self.runtime.db.write(work)
            result.made += [int(m["vmid"]) for m in made]

    # ---- running the playbooks -------------------------------------------------------------------------

    def _playbook(self, name: str, variables: dict, result: PassResult) -> dict | None:
        settings = self.runtime.settings
        run = PlaybookRun(
            project_dir=settings.project_dir,
            playbook=settings.playbook_dir / name,
            inventory=settings.inventory,
            runs_dir=settings.data_dir / "runs",
            variables=variables,
            secrets={},
            timeout=TIMEOUTS[name],
            ident=name.removesuffix(".yml").replace("_", "-"),
            vault_password_file=settings.vault_password_file,
            locks_db=self.runtime.db,
        ).run()
        if run.status != "successful":
            problem = f"{name}: {run.message or run.status}"
            log.warning("pool: %s", problem)
            result.problems.append(problem)
            return None
        return run.stats or {}

    @contextmanager
    def _lease(self, wait: float) -> Iterator[bool]:
        db = self.runtime.db

        def taken() -> bool:
            return locks.try_acquire(db, LOCK, self.holder, LEASE_SECONDS)

        try:
            if not taken():
                wait_for(taken, timeout=wait, what="the pool keeper's lock", interval=1.0)
        except TimedOut:
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_SECONDS / 3):
                locks.renew(db, LOCK, self.holder, LEASE_SECONDS)

        renewer = threading.Thread(target=renew, name="pool-keeper-lease", daemon=True)
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join()
            locks.release(db, LOCK, self.holder)
