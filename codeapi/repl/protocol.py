"""The REPL wire format between the API and the worker in the jail (stdlib only, no constant twice).

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

import json
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PREFIX = struct.Struct(">II")
MAX_HEADER_BYTES = 256 * 1024
# A frame without large blobs (ready, run without state) stays under this.
SMALL_FRAME_BYTES = 4 * 1024 * 1024

# Message types.
READY = "ready"  # worker -> API: the worker joined its jail and can take calls
RUN = "run"  # API -> worker
DONE = "done"  # worker -> API: the call's code returned (or raised)

# When the worker saves its state after a call.
SAVE_NEVER = "never"
SAVE_ON_SUCCESS = "success"
SAVE_ALWAYS = "always"

# State blobs: one codec byte, then the compressed cloudpickle of the user namespace.
CODEC_ZSTD = b"Z"
CODEC_ZLIB = b"L"

# The worker's end of its link to the API.
WORKER_LINK_FD = 3

SCRIPT_PATH = "/code/main.py"  # what tracebacks and sys.argv[0] show, as in a one-shot run


class ProtocolError(Exception):
    """A peer sent something that is not a well-formed frame within the caps."""


class Frame:
    __slots__ = ("header", "blobs")

    def __init__(self, header: dict[str, Any], blobs: dict[str, bytes] | None = None) -> None:
        self.header = header
        self.blobs = blobs if blobs is not None else {}

    @property
    def kind(self) -> str:
        return str(self.header.get("type", ""))


def encode(header: dict[str, Any], blobs: dict[str, bytes] | None = None) -> bytes:
    blobs = blobs or {}
    full = dict(header, blobs=[[name, len(data)] for name, data in blobs.items()])
    encoded = json.dumps(full, separators=(",", ":")).encode()
    body_len = sum(len(data) for data in blobs.values())
    return b"".join((PREFIX.pack(len(encoded), body_len), encoded, *blobs.values()))


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


def split_body(header: dict[str, Any], body: bytes) -> Frame:
    blobs: dict[str, bytes] = {}
    offset = 0
    for name, length in header.pop("blobs", []):
        blobs[name] = body[offset : offset + length]
        offset += length
    return Frame(header, blobs)


class FrameDecoder:
    """Incremental decoding for non-blocking readers: feed bytes, take whole frames."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames: list[Frame] = []
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
    """The largest frame a well-behaved peer sends: a state plus the headers and the code."""
    return max_state_bytes + SMALL_FRAME_BYTES
