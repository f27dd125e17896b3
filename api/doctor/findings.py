"""One finding of the doctor, and a report of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Finding:
    id: str  # stable name of the check: `database`, `pve.privileges`, ...
    ok: bool
    summary: str  # what was found
    fix: str = ""  # how to fix it; empty when ok

    @classmethod
    def of(cls, raw: object) -> Finding:
        """A finding reported by a check module (playbooks/doctor.yml); anything else is a finding that says so."""
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and isinstance(raw.get("summary"), str):
            return cls(raw["id"], bool(raw.get("ok")), raw["summary"], str(raw.get("fix") or ""))
        return cls("doctor", False, f"A check reported something the doctor cannot read: {str(raw)[:200]}")


def as_json(findings: list[Finding]) -> dict:
    return {"ok": all(f.ok for f in findings), "checks": [asdict(f) for f in findings]}


def as_text(findings: list[Finding]) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{'ok  ' if finding.ok else 'FAIL'} {finding.id}: {finding.summary}")
        if finding.fix:
            lines.append(f"     fix: {finding.fix}")
    failed = sum(not f.ok for f in findings)
    lines.append(f"{len(findings)} checks, {failed} failed" if failed else f"{len(findings)} checks, all ok")
    return "\n".join(lines)
