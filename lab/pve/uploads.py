"""POST /nodes/{node}/storage/{storage}/upload as Proxmox VE carries it out (docs/real-systems.md, "Uploads").

fakepve's own upload reads the whole body into memory and checks neither the file name nor a checksum. Here:
- the body is streamed to a temporary file (as pveproxy does into /var/tmp/pveupload-*), so a golden image of
  some hundred MiB does not sit in memory and is not cut by the fake's request size limit;
- the checks come in PVE's order: Datastore.AllocateTemplate on /storage/{storage}; the reference's parameter
  check; a file-based storage; the file name normalised and its extension matching the content type; the storage
  configured for that content (else PVE's 500 `storage '...' does not support '...' content`);
- the `imgcopy` task verifies the checksum when an algorithm is given and fails with PVE's `checksum mismatch`
  wording, then stores the volume: GET .../content lists it as <storage>:<content>/<file name> with its size, and
  a container create takes it as ostemplate. keep_upload() decides what becomes of the file (LabPve keeps it as a
  real template; the fake only needs its size).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path

from aiohttp import BodyPartReader
from fakepve.model import PveError, TaskError
from fakepve.routing import die, param_error, split_list
from fakepve.server import USER, ok

UPLOAD = "/nodes/{node}/storage/{storage}/upload"
# PVE's ISO_EXT_RE_0 and VZTMPL_EXT_RE_1 (PVE::Storage), by content type.
EXTENSIONS = {
    "iso": re.compile(r"[^/]+\.(?:iso|img)$", re.I),
    "vztmpl": re.compile(r"[^/]+\.tar\.(?:gz|xz|zst|bz2)$", re.I),
}
TARGET_DIRS = {"iso": "template/iso", "vztmpl": "template/cache"}
CHUNK = 1024**2
UPLOAD_PATH = re.compile(r"/nodes/[^/]+/storage/[^/]+/upload$")


def normalize_filename(name: str) -> str:
    """PVE::Storage::normalize_content_filename: the last path component, other characters than a-z A-Z 0-9 _ . -
    replaced by _."""
    name = re.sub(r"^.*[/\\]", "", name.rstrip("\n"))
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", name)


class Uploads:
    """Mixin of ProjectPve (before FakePve): the upload route fakepve registers, done as PVE does it."""

    async def _read_body(self, request):
        """fakepve reads every body whole before routing; an upload's is streamed by _receive instead."""
        if request.method == "POST" and UPLOAD_PATH.search(request.path):
            return b""
        return await super()._read_body(request)

    async def _upload(self, request):
        node, name = request.match_info["node"], request.match_info["storage"]
        store = self._active_store(name, node)
        user = request[USER]
        self.require(user, f"/storage/{name}", "Datastore.AllocateTemplate")
        fields, received = await self._receive(request)
        try:
            upid = await self._import(node, name, store, user, fields, received)
        except BaseException:
            received.unlink(missing_ok=True)
            raise
        return ok(upid)

    async def _receive(self, request) -> tuple[dict, Path]:
        """The form fields and the file part, written to a temporary file; PVE's 400 when it is no multipart form."""
        if request.content_type != "multipart/form-data":
            raise PveError(400, "bad upload request")
        fields: dict = {}
        handle, path = tempfile.mkstemp(prefix="pveupload-")
        received = Path(path)
        try:
            with os.fdopen(handle, "wb") as out:
                reader = await request.multipart()
                async for part in reader:
                    if not isinstance(part, BodyPartReader):
                        raise ValueError("nested multipart")
                    if part.filename is not None:
                        fields["filename"] = part.filename
                        while chunk := await part.read_chunk(CHUNK):
                            out.write(chunk)
                    else:
                        fields[part.name] = (await part.read()).decode()
        except (ValueError, AssertionError, UnicodeDecodeError):
            received.unlink(missing_ok=True)
            raise PveError(400, "bad upload request") from None
        except BaseException:
            received.unlink(missing_ok=True)
            raise
        return fields, received

    async def _import(self, node, name, store, user, fields, received: Path) -> str:
        if self.reference is not None:
            values = {k: v for k, v in fields.items() if k != "tmpfilename"}
            errors = self.reference.check("POST", UPLOAD, dict(values, node=node, storage=name))
            if errors:
                raise PveError(400, "Parameter verification failed.", errors)
        if not store.get("path"):
            raise die(f"can't upload to storage type '{store.get('type')}'")
        content = fields.get("content")
        filename = normalize_filename(fields.get("filename") or "")
        if content not in EXTENSIONS:
            raise param_error(content=f"upload content type '{content}' not allowed")
        if not EXTENSIONS[content].search(filename):
            raise param_error(filename="wrong file extension")
        if content not in split_list(store.get("content")):
            raise die(f"storage '{name}' does not support '{content}' content")
        algorithm = fields.get("checksum-algorithm")
        expected = (fields.get("checksum") or "").lower()
        size = received.stat().st_size
        target = f"{store['path']}/{TARGET_DIRS[content]}/{filename}"

        first = f"starting file import from: /var/tmp/{received.name}"

        async def body():
            # The task's own record (fakepve copies the first lines): the temporary file's name is unique.
            log = next(r["log"] for r in self.tasks.values() if r["log"][:1] == [first])
            try:
                if algorithm:
                    got = await asyncio.to_thread(_file_hash, algorithm, received)
                    if got != expected:
                        raise TaskError(f"checksum mismatch: got '{got}' != expect '{expected}'")
                    log.append("calculating checksum...OK, checksum verified")
                log.extend([f"target node: {node}", f"target file: {target}", f"file size is: {size}"])
                self.store_file(name, filename, size, content)
                await asyncio.to_thread(self.keep_upload, name, content, filename, received)
            finally:
                received.unlink(missing_ok=True)
            return "finished file import successfully"

        return await self.task(node, "imgcopy", "", user, body, log=[first])

    def keep_upload(self, storage: str, content: str, filename: str, path: Path) -> None:
        """What becomes of an uploaded file once it is stored (the model already lists it). The fake keeps
        nothing; LabPve keeps templates it can make containers from. path is removed after this returns."""


def _file_hash(algorithm: str, path: Path) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
