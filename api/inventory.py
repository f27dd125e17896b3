"""What the API needs from the Ansible inventory: plans and the site naming rule.

The playbooks read the same variables, so the configured inventory is the single place where an operator defines
plans and naming. It is read by ansible-core itself (api/ansible_vars.py): Jinja, Ansible Vault and every kind of
inventory source work as they do for `ansible-playbook`.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import idna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.ansible_vars import read_variables
from api.config import ConfigError

PLAN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# the inventory variables the API reads; the rest is the playbooks' business
API_VARIABLES = (
    "proxmoxwp_plans",
    "proxmoxwp_base_zone",
    "proxmoxwp_subdomain_prefix",
    "proxmoxwp_wordpress_admin_user",
)


class Plan(BaseModel):
    """One plan's sizes and quotas, as `proxmoxwp_plans.<name>` in the inventory."""

    model_config = ConfigDict(extra="allow")

    cores: int = Field(ge=1, le=128)
    memory_mb: int = Field(ge=128)
    swap_mb: int = Field(default=0, ge=0)
    disk_gb: int = Field(ge=1)
    backups: int = Field(ge=0, le=100)
    domains: int = Field(ge=0, le=1000)


class Naming(BaseModel):
    base_zone: str
    subdomain_prefix: str = "wp"
    admin_user: str = "wpadmin"

    @field_validator("base_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        try:
            return idna.encode(value, uts46=True).decode()
        except idna.IDNAError as exc:
            raise ValueError(f"base zone {value!r} is not a valid DNS name") from exc

    @field_validator("subdomain_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", value):
            raise ValueError("subdomain prefix must be lower-case letters, digits or '-'")
        return value

    @field_validator("admin_user")
    @classmethod
    def _admin(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_.-]{2,59}", value):
            raise ValueError("WordPress admin user must be 3-60 of a-z 0-9 _ . -")
        return value


class Inventory:
    """Plans and naming as the playbooks see them on `localhost` of the inventory at `path`."""

    def __init__(self, path: Path, vault_password_file: Path | None = None) -> None:
        self.path = path
        self.vault_password_file = vault_password_file

    @cached_property
    def variables(self) -> dict:
        return read_variables(self.path, API_VARIABLES, self.vault_password_file)

    @cached_property
    def plans(self) -> dict[str, Plan]:
        raw = self.variables.get("proxmoxwp_plans")
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"PROXMOXWP_INVENTORY: proxmoxwp_plans is missing in {self.path}")
        plans = {}
        for name, spec in raw.items():
            if not isinstance(name, str) or not PLAN_NAME.match(name):
                raise ConfigError(f"PROXMOXWP_INVENTORY: plan name {name!r} must match {PLAN_NAME.pattern}")
            try:
                plans[name] = Plan.model_validate(spec)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"])
                raise ConfigError(f"PROXMOXWP_INVENTORY: plan {name}: {where}: {error['msg']}") from None
        return plans

    @cached_property
    def naming(self) -> Naming:
        try:
            return Naming(
                base_zone=self.variables.get("proxmoxwp_base_zone", ""),
                subdomain_prefix=self.variables.get("proxmoxwp_subdomain_prefix", "wp"),
                admin_user=self.variables.get("proxmoxwp_wordpress_admin_user", "wpadmin"),
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            message = str(error["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"PROXMOXWP_INVENTORY: {message}") from None

    def subdomain(self, service_id: int) -> str:
        """The site's name: `<prefix><service_id>.<base zone>` (the playbooks use the same rule)."""
        return f"{self.naming.subdomain_prefix}{service_id}.{self.naming.base_zone}"

    def check(self) -> None:
        """Load everything now so that a broken inventory fails at start, not at the first request."""
        _ = self.plans, self.naming
