"""The PVE API the project targets (lab/reference/pve-api-full.json.gz, PVE 9.1) as a second request check.

fakepve validates every schema-routed request against its own, newer copy of PVE's schema. The two differ in a
few methods: fakepve's knows `auto-rebalance` on /cluster/ha/resources, which the PVE the project runs does not
have. A request must pass both, so a module cannot rely on a parameter its real peer would refuse with a 400.

It also holds each method's `permissions` (a machine-readable `check`, or `user: all` and a description), which
lab.pve.permissions enforces.

The reference lists parameters as {name, type, required, enum, format, minimum, maximum, pattern, default}.
Property-string formats are flattened there (format "object"), so their inner keys are left to fakepve's check;
Perl-only patterns are skipped, as fakepve skips them.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from importlib import resources
from pathlib import Path

from fakepve import schema as pve_schema

ENV = "PROXMOXWP_PVE_REFERENCE"
BUNDLED = "pve-api-full.json.gz"  # package data of lab.reference, origin in its README
CHECKED = ("type", "enum", "minimum", "maximum", "pattern")


def locate() -> Path | None:
    """$PROXMOXWP_PVE_REFERENCE, else the copy in the package; None if neither is there."""
    given = os.environ.get(ENV)
    if given:
        return Path(given)
    bundled = Path(str(resources.files("lab.reference") / BUNDLED))
    return bundled if bundled.is_file() else None


class Reference:
    """Parameter specs per (method, schema path template), in the shape fakepve.schema.validate takes."""

    def __init__(self, path: Path):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        self.path = path
        self.source = data.get("source", str(path))
        self.params = {
            (e["method"], e["path"]): {p["name"]: self._property(p) for p in e["params"]} for e in data["endpoints"]
        }
        # The method's `permissions` as the schema gives them (None: root@pam only), for lab.pve.permissions.
        self.permissions = {(e["method"], e["path"]): e.get("permissions") for e in data["endpoints"]}

    @staticmethod
    def _property(param: dict) -> dict:
        sch = {k: param[k] for k in CHECKED if k in param}
        if not param.get("required"):
            sch["optional"] = 1
        if isinstance(param.get("format"), str) and param["format"] != "object":
            sch["format"] = param["format"]
        return sch

    def declared(self, method: str, template: str) -> dict | None:
        """{name: schema} of the method's parameters, or None if the reference does not have the method."""
        return self.params.get((method, template))

    def check(self, method: str, template: str, values: dict, additional=0) -> dict:
        """PVE's per-parameter messages for values ({} when they pass, or when the method is not in the reference).

        additional: the method's additionalProperties (the reference does not carry it; fakepve's schema does).
        """
        props = self.declared(method, template)
        if props is None:
            return {}
        _, errors = pve_schema.validate({"additionalProperties": additional, "properties": props}, values)
        return errors


@functools.cache
def load(path: str | None = None) -> Reference | None:
    """The reference at path (default: locate()), parsed once per process; None when there is none."""
    found = Path(path) if path else locate()
    return Reference(found) if found and found.is_file() else None
