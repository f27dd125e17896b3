"""Settings read from the environment (PROXMOXWP_*), checked once at start."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, HttpUrl, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line an operator can act on."""


def _default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/proxmoxwp")
    return Path.home() / ".local/share/proxmoxwp"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


DNS_PORT = 53

# Threads of each `proxmoxwp serve` (gunicorn gthread) process. A request with `wait` holds one for up to
# PROXMOXWP_MAX_WAIT_SECONDS, so only part of them may wait (PROXMOXWP_MAX_WAITERS): the rest stay free.
DEFAULT_THREADS = 16


def default_max_waiters(threads: int) -> int:
    """Half the threads may wait for jobs: the other half answers /health, status and new changes at once."""
    return threads // 2


def resolver_address(text: str) -> tuple[str, int]:
    """`192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:5353` as (address, port).

    Only IP addresses: a resolver named by a host name would need a resolver to find it."""
    host, port = text.strip(), str(DNS_PORT)
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not IP, IP:PORT or [IPv6]:PORT")
        port = rest[1:] if rest else port
    elif host.count(":") == 1:  # IPv4:port (a bare IPv6 address has at least two colons)
        host, port = host.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not IP, IP:PORT or [IPv6]:PORT") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} has no valid port (1 to 65535)")
    return str(address), int(port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROXMOXWP_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    api_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_tokens_file: Path | None = None
    database_url: str = ""
    queue_url: str = ""
    inventory: Path = PROJECT_DIR / "inventory" / "lab"
    # The Ansible Vault password (or a vault client script) for the inventory's encrypted values; the API reads
    # it, and the worker's runs get its path as ANSIBLE_VAULT_PASSWORD_FILE, never the password itself.
    vault_password_file: Path | None = None
    project_dir: Path = PROJECT_DIR
    playbook_dir: Path = PROJECT_DIR / "playbooks"
    public_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    workers: int = Field(default=4, ge=1, le=64)
    job_timeouts: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    job_max_attempts: int = Field(default=2, ge=1, le=10)
    heartbeat_seconds: float = Field(default=5.0, gt=0, le=300)
    stale_after_seconds: float = Field(default=60.0, gt=0, le=3600)
    reaper_seconds: float = Field(default=10.0, gt=0, le=3600)
    # How often each live site is compared with the cluster and the edge (a reconcile job); 0 = never on its own.
    reconcile_seconds: float = Field(default=3600.0, ge=0, le=7 * 86400)
    # A certificate that could not be issued is tried again this long after, twice as long after each further
    # failure, at most ssl_retry_max_seconds; 0 = never on its own (POST /action/ssl-retry still does).
    ssl_retry_seconds: float = Field(default=600.0, ge=0, le=7 * 86400)
    ssl_retry_max_seconds: float = Field(default=86400.0, gt=0, le=30 * 86400)
    # How often a worker checks every member of the warm pool (docs/pool.md); a node short of members is filled
    # within seconds whatever this is. 0 = this worker keeps no pool.
    pool_seconds: float = Field(default=300.0, ge=0, le=86400)
    max_events_per_job: int = Field(default=500, ge=10, le=100_000)
    secret_key: str | None = None
    max_wait_seconds: int = Field(default=60, ge=0, le=600)
    # Requests that wait for their job at once in one server process; none = default_max_waiters(threads).
    max_waiters: int | None = Field(default=None, ge=0, le=10_000)
    # Where setdomain asks whether a customer's domain points to us; empty = the system's (/etc/resolv.conf).
    dns_resolvers: Annotated[list[tuple[str, int]], NoDecode] = Field(default_factory=list)
    dns_timeout: float = Field(default=5.0, gt=0, le=60)
    # How long a one-click login link to a site's WordPress is good for (POST /action/login-link): the customer's
    # browser follows it at once, so a short life leaves little to a link seen in a log or a browser's history.
    login_link_seconds: int = Field(default=60, ge=10, le=900)
    # Where a failed job is reported (api/jobs/failure_webhook.py): billing's hooks stop following a job after a few
    # seconds, so a failure after that reaches the operator here. Empty: nowhere but the job's record.
    failure_webhook_url: HttpUrl | None = None
    # Signs each report (X-ProxmoxWP-Signature: sha256=HMAC of the body), so the receiver knows it came from us.
    failure_webhook_secret: SecretStr | None = None

    @field_validator("failure_webhook_url", "failure_webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: object) -> object:
        # an empty variable means "not set", not the current directory
        return _default_data_dir() if value is None or str(value).strip() == "" else value

    @field_validator("api_tokens", "public_ips", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("api_tokens")
    @classmethod
    def _tokens_are_long(cls, tokens: list[str]) -> list[str]:
        for token in tokens:
            if len(token) < 16:
                raise ValueError("every API token must be at least 16 characters long")
        return tokens

    @field_validator("public_ips")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an IP address or network") from exc
        return values

    @field_validator("dns_resolvers", mode="before")
    @classmethod
    def _resolvers(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return [resolver_address(item) for item in _split_csv(value)]  # type: ignore[union-attr]

    @field_validator("job_timeouts", mode="before")
    @classmethod
    def _timeouts(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        timeouts: dict[str, int] = {}
        for item in _split_csv(value):  # type: ignore[union-attr]
            kind, sep, seconds = item.partition("=")
            if not sep or not seconds.strip().isdigit():
                raise ValueError(f"{item!r} is not KIND=SECONDS")
            timeouts[kind.strip()] = int(seconds)
        return timeouts

    @model_validator(mode="after")
    def _defaults_under_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.private_dir / 'proxmoxwp.sqlite3'}"
        if not self.queue_url:
            self.queue_url = f"sqlite:///{self.private_dir / 'queue.sqlite3'}"
        if self.vault_password_file is not None and str(self.vault_password_file).strip() in ("", "."):
            self.vault_password_file = None
        elif self.vault_password_file is not None:
            # runs start in another directory
            self.vault_password_file = self.vault_password_file.expanduser().absolute()
        if self.database_url.startswith(("postgresql://", "postgres://")):
            self.database_url = "postgresql+psycopg://" + self.database_url.split("://", 1)[1]
        if not self.database_url.startswith(("sqlite:///", "postgresql+psycopg://")):
            raise ValueError("PROXMOXWP_DATABASE_URL must be sqlite:///PATH or postgresql://…")
        if not self.queue_url.startswith(("sqlite:///", "redis://", "rediss://")):
            raise ValueError("PROXMOXWP_QUEUE_URL must be sqlite:///PATH or redis://…")
        return self

    def waiter_limit(self, threads: int = DEFAULT_THREADS) -> int:
        """How many requests of a server process with `threads` threads may wait at once; leaves one free at least."""
        if self.max_waiters is None:
            return default_max_waiters(threads)
        if self.max_waiters >= threads:
            raise ConfigError(
                f"PROXMOXWP_MAX_WAITERS: {self.max_waiters} waiting requests would take every one of the {threads}"
                " threads of a server process; set it below --threads (or raise --threads)"
            )
        return self.max_waiters

    @property
    def private_dir(self) -> Path:
        """The default databases' and the key file's folder, 0700 (api/private_files.py)."""
        return self.data_dir / "private"

    def tokens(self) -> list[str]:
        """Configured bearer tokens: the variable and, if set, one token per line of the file."""
        tokens = list(self.api_tokens)
        if self.api_tokens_file is not None:
            try:
                lines = self.api_tokens_file.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"PROXMOXWP_API_TOKENS_FILE cannot be read: {exc.strerror}") from None
            tokens += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return tokens


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning any validation problem into one ConfigError line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"PROXMOXWP_{field.upper()}: {message}" if error["loc"] else message) from None
