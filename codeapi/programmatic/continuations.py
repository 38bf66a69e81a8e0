"""Continuation tokens: unguessable, single use, bound to a caller, their state in the metadata store.

The store holds everything a continuation needs to go on anywhere (the program, its tools and
inputs, every earlier batch with its results), keyed by the token's hash: a replica that does not
hold the paused sandbox replays the program with the recorded results.

While a continuation is served its token is marked in use in the store, so that a second one sent
meanwhile, to any replica, is told so (409) rather than that the token is invalid.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from codeapi.errors import ContinuationInUse
from codeapi.storage.metadata.base import MetadataStore

TOKEN_BYTES = 32
IN_USE_GRACE_S = 60  # beyond the round's own timeout: the marker outlives any continuation it guards


@dataclass
class Batch:
    calls: list[dict[str, Any]]  # {"name", "input"}, as the program made them
    results: list[dict[str, Any]] = field(default_factory=list)  # {"ok", "value"|"error"}, same order


@dataclass
class RunState:
    run_id: str
    replica: str
    caller: str
    session_id: str
    lang: str
    code: str
    tools: list[list[str]]  # [name, identifier]
    files: list[list[str]]  # [file_id, storage session id, name]
    timeout_s: float
    user_id: str | None
    history: list[Batch] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)  # the wire ids of the batch now waiting for results
    superseded: list[str] = field(default_factory=list)  # earlier runs of this program, replayed elsewhere
    busy_s: float = 0.0  # the time requests waited on the program so far (its usage), pauses not counted

    def dump(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def load(cls, payload: bytes) -> RunState:
        values = json.loads(payload)
        values["history"] = [Batch(**batch) for batch in values["history"]]
        # A replica of another version may have written fields this one does not know (or no longer has).
        known = {item.name for item in fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in known})


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def in_use_key(key: str) -> str:
    return f"{key}:in-use"


class ContinuationStore:
    def __init__(self, metadata: MetadataStore, ttl_s: float) -> None:
        self.metadata = metadata
        self.ttl_s = ttl_s

    async def issue(self, state: RunState) -> str:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        await self.put(token_key(token), state)
        return token

    async def put(self, key: str, state: RunState) -> None:
        await self.metadata.put_continuation(key, state.dump(), datetime.now(UTC) + timedelta(seconds=self.ttl_s))

    async def take(self, token: str, caller: str) -> RunState | None:
        """The run behind the token, which is used up and marked in use until ``release``; None when
        unknown, used, expired or not the caller's. ContinuationInUse while another continuation of
        it is being served."""
        key = token_key(token)
        payload = await self.metadata.take_continuation(key)
        if payload is None:
            await self.check_not_in_use(key)
            return None
        state = RunState.load(payload)
        if not secrets.compare_digest(state.caller, caller):
            await self.put(key, state)  # another caller's guess must not use up the owner's token
            return None
        until = datetime.now(UTC) + timedelta(seconds=state.timeout_s + IN_USE_GRACE_S)
        await self.metadata.put_continuation(in_use_key(key), until.isoformat().encode(), until)
        return state

    async def check_not_in_use(self, key: str) -> None:
        # The store can only take a record to read it: the marker is put back as it was.
        marker = await self.metadata.take_continuation(in_use_key(key))
        if marker is not None:
            await self.metadata.put_continuation(in_use_key(key), marker, datetime.fromisoformat(marker.decode()))
            raise ContinuationInUse("Another continuation of this token is being served")

    async def release(self, token: str) -> None:
        """The continuation of ``token`` has been answered: a later one is simply refused as used."""
        await self.metadata.take_continuation(in_use_key(token_key(token)))

    async def revoke(self, key: str) -> None:
        await self.metadata.take_continuation(key)
