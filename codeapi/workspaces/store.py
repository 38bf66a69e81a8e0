"""Stateful runtime sessions: a workspace per (owner, hint), its lifetime, and its checkpoints.

The record lives in the metadata store, the checkpoint in the blob store as gzip'd tar layers: a full
one, then one per call that changed something (its new and changed paths, and the paths it deleted).
Any replica restores a workspace by unpacking the last full layer and the layers after it, so a
workspace survives its replica; a sandbox a replica keeps for it is only a cache, valid while the
record's revision is the one it holds. After a few layers the next checkpoint is full again and the
older layers are deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Literal

import structlog

from codeapi.errors import FileNotFound, SessionBusy
from codeapi.storage import keys
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.metadata.base import MetadataStore
from codeapi.units import MB
from codeapi.workspaces.tree import Changes, Tree, apply_layer, empty, size_of, write_layer

logger = structlog.get_logger(__name__)

RUNTIME_PREFIX = "rt_"
LAYERS_PER_FULL = 8  # the 9th checkpoint after a full one is full again: restores unpack at most 9 layers
MAX_DELETIONS_IN_RECORD = 1000  # a call that deleted more is checkpointed in full
SPOOL_BYTES = 8 * MB
LOCK_LEASE_S = 60
END_WAIT_S = 30  # an admin's end waits this long for a running call
Status = Literal["new", "reused"]


def runtime_session_id(owner: str, hint: str) -> str:
    """Stable for (owner, hint) and not derivable from the hint alone: two owners never share one."""
    digest = hashlib.sha256(f"{owner}\0{hint}".encode()).hexdigest()
    return f"{RUNTIME_PREFIX}{digest[:40]}"


@dataclass(frozen=True)
class RuntimePolicy:
    idle_s: float  # RUNTIME_SESSION_IDLE_SECONDS
    max_age_s: float  # RUNTIME_SESSION_MAX_AGE_SECONDS
    max_per_owner: int  # RUNTIME_SESSION_MAX_PER_USER
    max_bytes: int  # RUNTIME_SESSION_CHECKPOINT_MAX_MB


@dataclass
class Layer:
    key: str
    size_bytes: int  # compressed
    full: bool
    deleted: list[str] = field(default_factory=list)


@dataclass
class RuntimeSession:
    runtime_id: str
    owner: str
    session_id: str  # where its calls' output files are stored
    epoch: str  # new with every incarnation, so a sandbox kept for an ended one never matches
    created_at: float  # epoch seconds
    last_used_at: float
    generation: int = 0
    layers: list[Layer] = field(default_factory=list)
    tree_bytes: int = 0
    staged: dict[str, str] = field(default_factory=dict)  # /mnt/data name -> file id of inputs delivered
    former_sessions: list[str] = field(default_factory=list)  # files sessions it filled (MAX_FILES_PER_SESSION)
    calls: int = 0
    busy_ms: int = 0
    cpu_ms: int = 0

    @property
    def revision(self) -> str:
        """What a kept sandbox must hold to serve the next call without a restore."""
        return f"{self.epoch}:{self.generation}"

    def expired(self, policy: RuntimePolicy, now: float) -> bool:
        return now - self.last_used_at > policy.idle_s or now - self.created_at > policy.max_age_s

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def load(cls, document: str) -> RuntimeSession:
        values = json.loads(document)
        values["layers"] = [Layer(**layer) for layer in values.get("layers", [])]
        known = {item.name for item in fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in known})


@dataclass(frozen=True)
class Checkpointed:
    kept: bool  # False: over the size cap, the workspace stays as the previous call left it
    note: str | None = None


class RuntimeSessions:
    def __init__(self, metadata: MetadataStore, blobs: BlobStore, policy: RuntimePolicy) -> None:
        self.metadata = metadata
        self.blobs = blobs
        self.policy = policy

    async def get(self, runtime_id: str) -> RuntimeSession | None:
        document = await self.metadata.get_runtime_session(runtime_id)
        return None if document is None else RuntimeSession.load(document)

    async def all(self) -> list[RuntimeSession]:
        return [RuntimeSession.load(document) for document in await self.metadata.list_runtime_sessions()]

    async def begin(
        self, owner: str, hint: str, new_session: Callable[[], Awaitable[str]]
    ) -> tuple[RuntimeSession, Status]:
        """The owner's runtime session for ``hint``, or a new one (none yet, or idle or old past the
        policy). The caller holds the runtime session's lock."""
        runtime_id = runtime_session_id(owner, hint)
        now = time.time()
        current = await self.get(runtime_id)
        if current is not None and not current.expired(self.policy, now):
            return current, "reused"  # no sweep ends it under the call: a sweep ends only what is not locked
        if current is not None:
            await self.end(runtime_id)
        await self.make_room(owner, runtime_id, now)
        created = RuntimeSession(runtime_id, owner, await new_session(), secrets.token_hex(8), now, now)
        await self.metadata.put_runtime_session(runtime_id, created.dump())
        logger.info("workspace.created", runtime_session_id=runtime_id)
        return created, "new"

    async def make_room(self, owner: str, runtime_id: str, now: float) -> None:
        """At most RUNTIME_SESSION_MAX_PER_USER live ones per owner: the least recently used goes (its
        workspace may be reset at any time, as LibreChat tells the model); one in use stays."""
        owned = [item for item in await self.all() if item.owner == owner and item.runtime_id != runtime_id]
        expired = [item for item in owned if item.expired(self.policy, now)]
        live = sorted((item for item in owned if item not in expired), key=lambda item: item.last_used_at)
        excess = len(live) - (self.policy.max_per_owner - 1)
        for item in [*expired, *live[: max(excess, 0)]]:
            if await self.end_unless_busy(item.runtime_id):
                logger.info("workspace.reclaimed", runtime_session_id=item.runtime_id)

    async def restore(self, record: RuntimeSession, root: Path, uid: int) -> bool:
        """Unpack the checkpoint into ``root`` (empty), owned by ``uid``. False when a layer of it is
        gone from the blob store (deleted outside codeapi, a bucket lost): rather than fail every call
        from now on, the runtime session starts over, empty, and the caller says so."""
        start = max((index for index, layer in enumerate(record.layers) if layer.full), default=0)
        for layer in record.layers[start:]:
            with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:
                try:
                    await self.download(layer.key, spool)
                except FileNotFound:
                    logger.warning("workspace.checkpoint_lost", runtime_session_id=record.runtime_id, key=layer.key)
                    await asyncio.to_thread(empty, root)
                    await self.forget_checkpoint(record)
                    return False
                spool.seek(0)
                await asyncio.to_thread(apply_layer, root, spool, layer.deleted, uid)
        return True

    async def forget_checkpoint(self, record: RuntimeSession) -> None:
        """As a new incarnation: no layers (the next checkpoint is full), no kept sandbox matches, and
        inputs are delivered again."""
        await self.blobs.delete_prefix(keys.workspace_prefix(record.runtime_id))
        record.layers, record.tree_bytes, record.staged = [], 0, {}
        record.epoch, record.generation = secrets.token_hex(8), 0

    async def download(self, key: str, out: IO[bytes]) -> None:
        async for chunk in self.blobs.read(key):
            out.write(chunk)

    async def checkpoint(self, record: RuntimeSession, root: Path, after: Tree, changes: Changes) -> Checkpointed:
        """Store what a call changed as the next layer (full every LAYERS_PER_FULL), then the record."""
        record.last_used_at = time.time()
        record.calls += 1
        size = size_of(after)
        if size > self.policy.max_bytes:
            await self.save(record)
            return Checkpointed(
                False,
                f"The workspace holds {size / MB:.1f} MB, over the limit of {self.policy.max_bytes // MB} MB: "
                "this execution's changes to /mnt/data are not kept",
            )
        if changes:
            since_full = len(record.layers) - max(
                (index for index, layer in enumerate(record.layers) if layer.full), default=-1
            )
            full = not record.layers or since_full > LAYERS_PER_FULL or len(changes.deleted) > MAX_DELETIONS_IN_RECORD
            paths = sorted(after) if full else changes.changed
            layer = await self.upload(record, root, paths, after, [] if full else changes.deleted, full)
            superseded = record.layers if full else []
            record.layers = [layer] if full else [*record.layers, layer]
            record.generation += 1
            record.tree_bytes = size
            await self.save(record)
            for old in superseded:
                await self.blobs.delete(old.key)
        else:
            await self.save(record)
        return Checkpointed(True)

    async def upload(
        self, record: RuntimeSession, root: Path, paths: list[str], tree: Tree, deleted: list[str], full: bool
    ) -> Layer:
        key = keys.workspace_layer_key(record.runtime_id, f"{record.epoch}-{record.generation + 1:08d}.tar.gz")
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:
            await asyncio.to_thread(write_layer, root, paths, tree, spool)
            spool.seek(0)
            size = await self.blobs.put(key, chunks_of(spool))
        return Layer(key, size, full, deleted)

    async def save(self, record: RuntimeSession) -> None:
        await self.metadata.put_runtime_session(record.runtime_id, record.dump())

    async def end(self, runtime_id: str) -> bool:
        """Forget a runtime session and delete its checkpoint; whether there was one."""
        existed = await self.metadata.get_runtime_session(runtime_id) is not None
        await self.metadata.delete_runtime_session(runtime_id)
        await self.blobs.delete_prefix(keys.workspace_prefix(runtime_id))
        return existed

    async def end_when_idle(self, runtime_id: str, wait_s: float = END_WAIT_S) -> bool:
        """End it once no call holds it (SessionBusy past ``wait_s``); whether there was one."""
        async with self.metadata.lock(runtime_id, timeout_s=LOCK_LEASE_S, wait_s=wait_s):
            return await self.end(runtime_id)

    async def end_unless_busy(self, runtime_id: str) -> bool:
        """End it unless a call holds it now; whether it ended."""
        try:
            return await self.end_when_idle(runtime_id, wait_s=0)
        except SessionBusy:
            return False

    async def sweep(self) -> int:
        """End every runtime session past its idle time or age; how many ended."""
        now = time.time()
        ended = 0
        for record in await self.all():
            if record.expired(self.policy, now):
                ended += await self.end_unless_busy(record.runtime_id)
        return ended


async def chunks_of(source: IO[bytes], size: int = 1 * MB) -> AsyncIterator[bytes]:
    while chunk := source.read(size):
        yield chunk
