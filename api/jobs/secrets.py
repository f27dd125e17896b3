"""Sealing the secrets a job hands to its playbook (the WordPress admin password) until it has run."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from api.db import erase_after_commit

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.models import Job

MASK = "********"


class SecretBox:
    """Fernet with a key from PROXMOXWP_SECRET_KEY, or a key file made once in `folder` (the data dir's private
    folder, api/private_files.py)."""

    def __init__(self, secret_key: str | None, folder: Path) -> None:
        self._secret_key = secret_key
        self._key_file = folder / "secret.key"
        self._fernet: Fernet | None = None

    def _material(self) -> str:
        return self._secret_key or self._load_or_create_key_file()

    def _cipher(self) -> Fernet:
        if self._fernet is None:
            key = base64.urlsafe_b64encode(hashlib.sha256(self._material().encode()).digest())
            self._fernet = Fernet(key)
        return self._fernet

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key of its own for `purpose` (HKDF-SHA256 from the same material): what one site holds tells
        nothing of another's key nor of the sealing key, and nothing per site needs storing here."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"proxmoxwp derived keys", info=purpose.encode())
        return hkdf.derive(self._material().encode())

    def _load_or_create_key_file(self) -> str:
        if not self._key_file.exists():
            self._key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Written whole under another name, then linked into place: a process starting at the same moment
            # never reads a half-written key (which would seal with another key), and the first link wins.
            draft = self._key_file.with_name(f".{self._key_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            try:
                os.link(draft, self._key_file)
            except FileExistsError:
                pass  # another process made it first
            finally:
                draft.unlink()
        return self._key_file.read_text().strip()

    def seal(self, values: dict[str, str]) -> bytes:
        return self._cipher().encrypt(json.dumps(values).encode())

    def open(self, token: bytes | None) -> dict[str, str]:
        if not token:
            return {}
        try:
            return json.loads(self._cipher().decrypt(token))
        except InvalidToken:
            return {}


def forget_sealed(session: Session, job: Job) -> None:
    """Clear the secrets of a job that no longer needs them, and have them erased from the database files once
    the transaction is committed (Database.erase_freed)."""
    if job.sealed_secrets is not None:
        erase_after_commit(session)
    job.sealed_secrets = None


def scrub(value, secret_values: list[str]):
    """A copy of `value` (str, list, dict) with every secret replaced by a mask."""
    if not secret_values:
        return value
    if isinstance(value, str):
        for secret in secret_values:
            if secret:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, list | tuple):
        return [scrub(item, secret_values) for item in value]
    if isinstance(value, dict):
        return {key: scrub(item, secret_values) for key, item in value.items()}
    return value
