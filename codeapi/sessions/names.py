"""File names as the sandbox will see them: relative paths under /mnt/data, never escaping it."""

from __future__ import annotations

import mimetypes
import unicodedata

from codeapi.errors import BadFilename


def sanitize_name(raw: str, max_length: int) -> str:
    """Normalise an uploaded or referenced name into a safe relative path with sub-folders kept.

    Rejects (400) instead of guessing when nothing sensible is left: empty names, traversal,
    hidden segments or over-long names.
    """
    name = unicodedata.normalize("NFC", raw).replace("\\", "/")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise BadFilename(f"Filename contains control characters: {raw!r}", field="filename")
    parts = [part.strip() for part in name.split("/") if part.strip() not in ("", ".")]
    if not parts:
        raise BadFilename("Filename is empty", field="filename")
    if any(part == ".." for part in parts):
        raise BadFilename(f"Filename may not contain '..': {raw!r}", field="filename")
    if parts[0] == "mnt" and parts[1:2] == ["data"] and len(parts) > 2:
        parts = parts[2:]  # clients sometimes send the absolute sandbox path
    clean = "/".join(parts)
    if len(clean.encode()) > max_length or any(len(part.encode()) > 255 for part in parts):
        raise BadFilename(f"Filename longer than {max_length} bytes", field="filename")
    return clean


def is_hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split("/"))


def content_type_for(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"
