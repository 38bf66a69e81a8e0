"""The REPL wire formats, API <-> worker and API <-> zygote, defined once for both sides (stdlib only).

The worker is the pre-imported interpreter that runs user code; the API talks to it over a socket
of their own (fd 3 in the worker), never over the user's stdout or stderr. A frame is

    >II header_len body_len | header (UTF-8 JSON object) | body (the header's named blobs, in order)

so binary payloads (output, pickled state) travel without base64, and every length is checked
against a cap before a byte of it is read: a peer writing garbage gets a ``ProtocolError``, never
an unbounded buffer. User code can write to fd 3 too: whatever arrives there is treated as the
worker's own word about its own call (its exit status, its pickled state), never as the API's
observation of the call (output, time, how it ended), which the API makes from outside the jail.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

PREFIX = struct.Struct(">II")
MAX_HEADER_BYTES = 256 * 1024
# A frame without a state (ready, done, run with code up to the API's 1 MiB cap) stays under this.
SMALL_FRAME_BYTES = 4 * 1024 * 1024

# State blobs: one codec byte, then the compressed cloudpickle of the user namespace.
CODEC_ZSTD = b"Z"
CODEC_ZLIB = b"L"

# The worker's end of its link to the API.
WORKER_LINK_FD = 3

SCRIPT_PATH = "/code/main.py"  # what tracebacks and sys.argv[0] show, as in a one-shot run

# Bound at import, before any user code: a call that replaces ``json.dumps`` (a common way to make
# it serialise dates) must not garble the worker's report of that very call.
HEADER_ENCODER = json.JSONEncoder(separators=(",", ":"))


class ProtocolError(Exception):
    """A peer sent something that is not a well-formed frame within the caps."""


class Save(enum.Enum):
    """When the worker saves its state after a call."""

    NEVER = "never"
    ON_SUCCESS = "success"
    ALWAYS = "always"


@dataclass(frozen=True)
class Ready:
    """worker -> API: the worker joined its jail and can take calls."""

    pid: int


@dataclass(frozen=True)
class Run:
    """API -> worker: run ``code`` (the program's UTF-8 text, sent as a blob: any size up to the
    frame cap, no JSON escaping). ``call`` is a fresh random nonce the worker learns only now: its
    report must name it, so nothing written to the link before the call can pass for its report."""

    call: str
    code: bytes
    args: tuple[str, ...]
    save: Save
    state: bytes | None = None  # the namespace to restore first


@dataclass(frozen=True)
class Done:
    """worker -> API: the call's code returned (or raised); its own word on that, nothing more."""

    call: str
    exit_code: int
    failed: bool  # the code raised
    state: bytes | None = None
    state_raw_bytes: int = 0
    state_skipped: tuple[str, ...] = ()
    state_too_large: int | None = None  # the compressed size of a state over the limit (not sent)


@dataclass(frozen=True)
class Exec:
    """API -> worker: start ``argv`` (in /mnt/data, with exactly ``environment``, each ``NAME=value``)
    as a new process does (every signal default, none blocked), wait for it and report how it ended:
    a ``Done`` naming ``call``, whose exit code is the program's status (negative: the signal that
    ended it). A program of another language run beside the fresh worker, which only waits meanwhile;
    it inherits no descriptor but 0-2."""

    call: str
    argv: tuple[str, ...]
    environment: tuple[str, ...]


Message = Ready | Run | Done | Exec
KINDS: dict[str, type[Message]] = {"ready": Ready, "run": Run, "done": Done, "exec": Exec}
KIND_OF = {kind: name for name, kind in KINDS.items()}


# The zygote's control channel: a SOCK_SEQPACKET pair between the API and the zygote, one JSON
# object per datagram (a Spawn carries the init's pidfd and the worker's fds beside it).
@dataclass(frozen=True)
class ZygoteReady:
    """zygote -> API: the data stack is imported; it takes Spawn requests."""


@dataclass(frozen=True)
class Spawn:
    """API -> zygote: fork a worker into the jail whose init is ``init_pid`` (a host pid)."""

    token: str
    init_pid: int
    uid: int
    cgroups: tuple[str, ...]  # the init's own cgroup directories, one per controller
    max_state_bytes: int


@dataclass(frozen=True)
class Spawned:
    token: str
    pid: int  # the worker's host pid


@dataclass(frozen=True)
class SpawnFailed:
    token: str
    error: str


@dataclass(frozen=True)
class Exited:
    """zygote -> API: a worker it forked was reaped."""

    pid: int
    status: int  # negative: the signal that ended it


Control = ZygoteReady | Spawn | Spawned | SpawnFailed | Exited
CONTROL_KINDS: dict[str, type[Control]] = {
    "ready": ZygoteReady,
    "spawn": Spawn,
    "spawned": Spawned,
    "spawn_failed": SpawnFailed,
    "exited": Exited,
}
CONTROL_KIND_OF = {kind: name for name, kind in CONTROL_KINDS.items()}


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Every field's wire check and conversion, by its annotation (the dataclasses above are the only types).
FIELD_TYPES: dict[str, tuple[Callable[[object], bool], Callable[[Any], Any]]] = {
    "int": (is_int, int),
    "bool": (lambda value: isinstance(value, bool), bool),
    "str": (lambda value: isinstance(value, str), str),
    "bytes": (lambda value: isinstance(value, bytes), bytes),
    "bytes | None": (lambda value: value is None or isinstance(value, bytes), lambda value: value),
    "int | None": (lambda value: value is None or is_int(value), lambda value: value),
    "tuple[str, ...]": (lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value), tuple),
    "Save": (lambda value: value in {item.value for item in Save}, Save),
}


def encode(message: Message) -> bytes:
    """One frame: bytes fields travel as blobs, the others in the JSON header (None fields not at all)."""
    header: dict[str, Any] = {"type": KIND_OF[type(message)]}
    blobs: dict[str, bytes] = {}
    for item in fields(message):
        value = getattr(message, item.name)
        if isinstance(value, bytes):
            blobs[item.name] = value
        elif value is not None:
            header[item.name] = value.value if isinstance(value, Save) else value
    header["blobs"] = [[name, len(data)] for name, data in blobs.items()]
    encoded = HEADER_ENCODER.encode(header).encode()
    body_len = sum(len(data) for data in blobs.values())
    return b"".join((PREFIX.pack(len(encoded), body_len), encoded, *blobs.values()))


def decode(header: dict[str, Any], blobs: dict[str, bytes]) -> Message:
    """The message a frame carries (see build)."""
    message: Message = build(KINDS, header, blobs)
    return message


def encode_control(message: Control) -> bytes:
    return json.dumps({"type": CONTROL_KIND_OF[type(message)], **asdict(message)}).encode()


def decode_control(data: bytes) -> Control:
    try:
        header = json.loads(data)
    except ValueError as error:
        raise ProtocolError(f"control message is not JSON: {error}") from error
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("control message is not an object with a type")
    message: Control = build(CONTROL_KINDS, header, {})
    return message


def build(kinds: dict[str, type[Any]], header: dict[str, Any], blobs: dict[str, bytes]) -> Any:
    """The message ``header`` and ``blobs`` make, every field checked against its type (a peer may
    be hostile); names the message does not define are ignored."""
    kind = kinds.get(header["type"])
    if kind is None:
        raise ProtocolError(f"unknown message type {header['type']!r}")
    values: dict[str, Any] = {}
    for item in fields(kind):
        value = blobs[item.name] if item.name in blobs else header.get(item.name, item.default)
        if value is MISSING:
            raise ProtocolError(f"{header['type']} without {item.name}")
        valid, convert = FIELD_TYPES[str(item.type)]
        if not valid(value):
            raise ProtocolError(f"{header['type']}.{item.name} is not {item.type}")
        values[item.name] = convert(value)
    return kind(**values)


def parse_header(raw: bytes, body_len: int) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise ProtocolError(f"header is not JSON: {error}") from error
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("header is not an object with a type")
    sections = header.get("blobs", [])
    if not isinstance(sections, list) or not all(valid_section(item) for item in sections):
        raise ProtocolError("malformed blob table")
    if sum(item[1] for item in sections) != body_len:
        raise ProtocolError("blob table does not match the body length")
    return header


def valid_section(item: Any) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], int)
        and item[1] >= 0
    )


def split_body(header: dict[str, Any], body: bytes) -> Message:
    blobs: dict[str, bytes] = {}
    offset = 0
    for name, length in header.pop("blobs", []):
        blobs[name] = body[offset : offset + length]
        offset += length
    return decode(header, blobs)


class FrameDecoder:
    """Incremental decoding for non-blocking readers: feed bytes, take whole frames."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self.buffer += data
        frames: list[Message] = []
        while len(self.buffer) >= PREFIX.size:
            header_len, body_len = PREFIX.unpack_from(self.buffer)
            check_lengths(header_len, body_len, self.max_frame_bytes)
            end = PREFIX.size + header_len + body_len
            if len(self.buffer) < end:
                break
            raw_header = bytes(self.buffer[PREFIX.size : PREFIX.size + header_len])
            header = parse_header(raw_header, body_len)
            frames.append(split_body(header, bytes(self.buffer[PREFIX.size + header_len : end])))
            del self.buffer[:end]
        return frames


def check_lengths(header_len: int, body_len: int, max_frame_bytes: int) -> None:
    if header_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")
    if header_len + body_len > max_frame_bytes:
        raise ProtocolError(f"frame of {header_len + body_len} bytes exceeds {max_frame_bytes}")


def frame_cap(max_state_bytes: int) -> int:
    """The largest frame a well-behaved peer sends: a state plus the header and the code."""
    return max_state_bytes + SMALL_FRAME_BYTES
