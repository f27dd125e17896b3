"""What the API needs from the Ansible inventory: plans and the site naming rule.

The playbooks read the same variables, so the configured inventory is the single place where an operator defines
plans and naming. It is read by ansible-core itself (api/ansible_vars.py): Jinja, Ansible Vault and every kind of
inventory source work as they do for `ansible-playbook`.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import idna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.ansible_vars import read_variables
from api.config import PROJECT_DIR, ConfigError
from api.pve import init_collection_loader

PLAN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# the inventory variables the API reads; the rest is the playbooks' business
API_VARIABLES = (
    "proxmoxwp_plans",
    "proxmoxwp_base_zone",
    "proxmoxwp_subdomain_prefix",
    "proxmoxwp_wordpress_admin_prefix",
    "proxmoxwp_wordpress_admin_user",  # replaced by the prefix: read only to say so
    "proxmoxwp_pool",
    "proxmoxwp_pve_ostemplate",
)
ADMIN_SUFFIX = 6  # letters and digits after the prefix and a dash: 36**6 logins per prefix


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
    admin_prefix: str = "wpadmin"

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

    @field_validator("admin_prefix")
    @classmethod
    def _admin(cls, value: str) -> str:
        # WordPress takes logins of 60 characters at most; the dash and the suffix follow the prefix.
        if not re.fullmatch(rf"[a-z][a-z0-9_.-]{{2,{59 - 1 - ADMIN_SUFFIX}}}", value):
            raise ValueError(
                f"proxmoxwp_wordpress_admin_prefix must be 3-{60 - 1 - ADMIN_SUFFIX} of a-z 0-9 _ . -, "
                "starting with a letter"
            )
        return value

    def new_admin_user(self) -> str:
        """A site's administrator login: the prefix, a dash and random letters and digits, so that no two sites share
        a login to guess, nor one that follows from the service id."""
        alphabet = string.ascii_lowercase + string.digits
        return f"{self.admin_prefix}-{''.join(secrets.choice(alphabet) for _ in range(ADMIN_SUFFIX))}"


class PoolSpec(BaseModel):
    """The warm pool's settings (`proxmoxwp_pool`, docs/pool.md): members per node, made at the size of `plan`."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=0, ge=0, le=50)
    plan: str = "basic"


@dataclass(frozen=True)
class PoolSettings:
    size: int
    plan: Plan | None  # None when the pool is off
    plan_name: str
    ostemplate: str  # the golden image members are made from (proxmoxwp_pve_ostemplate)


class Inventory:
    """Plans, naming and the warm pool as the playbooks see them on `localhost` of the inventory at `path`."""

    def __init__(self, path: Path, vault_password_file: Path | None = None, project_dir: Path = PROJECT_DIR) -> None:
        self.path = path
        self.vault_password_file = vault_password_file
        self.project_dir = project_dir

    @cached_property
    def variables(self) -> dict:
        # the inventory's lookups (the lab's pool size comes from the environment) need Ansible's collection loader
        init_collection_loader(self.project_dir)
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
        if "proxmoxwp_wordpress_admin_user" in self.variables:
            # one login for every site was the old setting; silently ignoring it would hide that it changed
            raise ConfigError(
                "PROXMOXWP_INVENTORY: proxmoxwp_wordpress_admin_user is no longer read: each site gets its own "
                "login from proxmoxwp_wordpress_admin_prefix (naming.yml); remove the old setting"
            )
        try:
            return Naming(
                base_zone=self.variables.get("proxmoxwp_base_zone", ""),
                subdomain_prefix=self.variables.get("proxmoxwp_subdomain_prefix", "wp"),
                admin_prefix=self.variables.get("proxmoxwp_wordpress_admin_prefix", "wpadmin"),
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            message = str(error["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"PROXMOXWP_INVENTORY: {message}") from None

    @cached_property
    def pool(self) -> PoolSettings:
        try:
            spec = PoolSpec.model_validate(self.variables.get("proxmoxwp_pool") or {})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise ConfigError(f"PROXMOXWP_INVENTORY: proxmoxwp_pool.{where}: {error['msg']}") from None
        ostemplate = str(self.variables.get("proxmoxwp_pve_ostemplate") or "")
        if spec.size == 0:
            return PoolSettings(0, None, spec.plan, ostemplate)
        if spec.plan not in self.plans:
            raise ConfigError(
                f"PROXMOXWP_INVENTORY: proxmoxwp_pool.plan {spec.plan!r} is not a plan ({', '.join(self.plans)})"
            )
        if not ostemplate:
            raise ConfigError("PROXMOXWP_INVENTORY: proxmoxwp_pool needs proxmoxwp_pve_ostemplate, the golden image")
        return PoolSettings(spec.size, self.plans[spec.plan], spec.plan, ostemplate)

    def subdomain(self, service_id: int) -> str:
        """The site's name: `<prefix><service_id>.<base zone>` (the playbooks use the same rule)."""
        return f"{self.naming.subdomain_prefix}{service_id}.{self.naming.base_zone}"

    def check(self) -> None:
        """Load everything now so that a broken inventory fails at start, not at the first request."""
        _ = self.plans, self.naming, self.pool
