"""Python variables of a programmatic run, kept per session as /exec keeps them.

The run starts with the session's saved state (written to /code for the driver) and, when it
ends as STATE_CAPTURE_ON_ERROR allows, leaves its own in the jail's home, which is stored in its
place. The bytes are the warm REPL's format, made by the REPL's own functions: the API's package
is bound read-only into the jail for the driver to import them.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import codeapi
from codeapi.execution.warm import WarmPython
from codeapi.repl import protocol
from codeapi.sandbox.policy import Bind
from codeapi.sandbox.workspace import JobDirs
from codeapi.storage.metadata.base import StateRecord
from codeapi.units import MB

PACKAGE_DIR = Path(codeapi.__file__).resolve().parent
LIBRARY_DIR = "/opt/codeapi-lib"  # sandbox_driver.LIBRARY
STATE_FILE = "state.bin"  # /code/state.bin in the jail: sandbox_driver.STATE_IN
SAVED_STATE_FILE = ".codeapi-state"  # /home/sandbox/.codeapi-state: sandbox_driver.STATE_OUT
RAW_SIZE = struct.Struct(">Q")  # the uncompressed size, ahead of the saved blob


@dataclass(frozen=True)
class SessionVariables:
    warm: WarmPython | None  # None: REPL_ENABLED=false; no states: STATE_PERSISTENCE_ENABLED=false
    max_bytes: int

    def save_mode(self, keeps_variables: bool) -> protocol.Save:
        """How the program's variables are saved: never for a language that keeps none (its ToolCalling)."""
        if not keeps_variables or self.warm is None or self.warm.states is None:
            return protocol.Save.NEVER
        return self.warm.save_mode

    def binds(self, save_mode: protocol.Save) -> tuple[Bind, ...]:
        return (Bind(PACKAGE_DIR, f"{LIBRARY_DIR}/codeapi"),) if save_mode is not protocol.Save.NEVER else ()

    async def restore(self, session_id: str, dirs: JobDirs) -> StateRecord | None:
        """The session's saved state into /code; returns its record (the one a save replaces)."""
        if self.warm is None or self.warm.states is None:
            return None
        saved = await self.warm.states.current(session_id)
        loaded = await self.warm.states.load(saved) if saved is not None else None
        if loaded is not None:
            (dirs.code / STATE_FILE).write_bytes(loaded.data)
            os.chown(dirs.code / STATE_FILE, dirs.uid, dirs.uid)
        return saved

    async def save(self, session_id: str, dirs: JobDirs, previous: StateRecord | None, notes: list[str]) -> None:
        """What the ended program left, if anything; the jail is gone, so the file no longer moves."""
        path = dirs.home / SAVED_STATE_FILE
        if self.warm is None or self.warm.states is None or path.is_symlink() or not path.is_file():
            return
        if path.stat().st_size > self.max_bytes + RAW_SIZE.size:
            notes.append(f"Variables not saved: their serialised size exceeds the limit of {self.max_bytes // MB} MB")
            return
        data = path.read_bytes()
        if len(data) > RAW_SIZE.size:
            raw_bytes = RAW_SIZE.unpack(data[: RAW_SIZE.size])[0]
            await self.warm.states.save(session_id, data[RAW_SIZE.size :], raw_bytes, previous)
