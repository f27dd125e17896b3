"""The NPM double's state in a JSON file, so the lab's NPM keeps its hosts and certificates across restarts.

The file holds the admin's tokens (`NpmState.export`), so it is written 0600, and replaced atomically after every
change.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lab.npm.files import write_atomic
from lab.npm.state import NpmState

log = logging.getLogger(__name__)


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: dict[str, Any] | None = None

    def load(self, state: NpmState) -> bool:
        """Restore `state` from the file; False when there is none yet."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return False
        state.restore(data)
        self._written = data
        return True

    def save(self, state: NpmState) -> None:
        """Write the state unless the file already holds it (an NpmState observer)."""
        data = state.export()
        if data == self._written:
            return
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)
        self._written = data

    def follow(self, state: NpmState) -> None:
        """Save after every change from now on."""
        state.subscribe(self._save_quietly)

    def _save_quietly(self, state: NpmState) -> None:
        try:
            self.save(state)
        except OSError as error:  # the API keeps answering; the next change tries again
            log.error("cannot save the NPM state to %s: %s", self.path, error)
