"""Everything a process of ProxmoxWP needs, built once from the settings: API, worker and CLI alike."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from api.config import ConfigError, Settings
from api.db import Database
from api.inventory import Inventory
from api.jobs.queue import JobQueue
from api.jobs.secrets import SecretBox
from api.placer import Placer
from api.private_files import prepare


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def private_dir(self) -> Path:
        """DATA_DIR/private (0700), an older install's databases and key moved in: before anything opens them."""
        return prepare(self.settings)

    @cached_property
    def db(self) -> Database:
        self.private_dir  # noqa: B018 - made (and an older install moved) first
        return Database(self.settings.database_url)

    @cached_property
    def queue(self) -> JobQueue:
        self.private_dir  # noqa: B018 - made (and an older install moved) first
        return JobQueue(self.settings.queue_url)

    @cached_property
    def inventory(self) -> Inventory:
        return Inventory(self.settings.inventory, self.settings.vault_password_file, self.settings.project_dir)

    @cached_property
    def placer(self) -> Placer:
        return Placer(self.settings)

    @cached_property
    def pool_image(self) -> str:
        """The tag of the golden image the warm pool's members are made from now (docs/pool.md); "" without a pool."""
        from api.pool.images import image_tag

        pool = self.inventory.pool
        return image_tag(self.settings, pool.ostemplate) if pool.size else ""

    @cached_property
    def secret_box(self) -> SecretBox:
        return SecretBox(self.settings.secret_key, self.private_dir)

    @cached_property
    def tokens(self) -> list[str]:
        return self.settings.tokens()

    def check(self, *, need_tokens: bool = False, need_schema: bool = True) -> None:
        """Fail now, with one line, on anything that would fail later."""
        from api.migrate import is_current

        if need_tokens and not self.tokens:
            raise ConfigError("PROXMOXWP_API_TOKENS (or PROXMOXWP_API_TOKENS_FILE) must name at least one token")
        if not self.settings.inventory.is_dir():
            raise ConfigError(f"PROXMOXWP_INVENTORY: {self.settings.inventory} is not a directory")
        self.inventory.check()
        try:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"PROXMOXWP_DATA_DIR: {self.settings.data_dir}: {exc.strerror}") from None
        self.private_dir  # noqa: B018 - its own error, before "cannot connect" would hide it
        if need_schema:
            try:
                current = is_current(self.db)
            except Exception as exc:
                raise ConfigError(f"PROXMOXWP_DATABASE_URL: cannot connect ({_first_line(exc)})") from None
            if not current:
                raise ConfigError("the database schema is not up to date: run `proxmoxwp db upgrade`")

    @staticmethod
    def put_tools_on_path() -> None:
        """ansible-runner runs `ansible-playbook` from PATH: make it the one beside this Python."""
        bindir = str(Path(sys.executable).parent)
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
