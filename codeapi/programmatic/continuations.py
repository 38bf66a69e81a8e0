"""Continuation tokens: unguessable, single use, bound to a caller, their state in the metadata store.

The store holds everything a continuation needs to go on anywhere (the program, its tools and
inputs, every earlier batch with its results), keyed by the token's hash: a replica that does not
hold the paused sandbox replays the program with the recorded results.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from codeapi.storage.metadata.base import MetadataStore

TOKEN_BYTES = 32


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
    request_id: str | None
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
        return cls(**values)


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
        """The run behind the token, which is used up; None when unknown, used, expired or not the caller's."""
        key = token_key(token)
        payload = await self.metadata.take_continuation(key)
        if payload is None:
            return None
        state = RunState.load(payload)
        if not secrets.compare_digest(state.caller, caller):
            await self.put(key, state)  # another caller's guess must not use up the owner's token
            return None
        return state

    async def revoke(self, key: str) -> None:
        await self.metadata.take_continuation(key)
