"""Sizes in bytes, defined once: settings count in KB and MB (``*_kb``, ``*_mb``), code in bytes.

The lowest layer: it imports nothing, so every module may import it (the README's Layout).
"""

from __future__ import annotations

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
# How much of a file is held at once while one is streamed: uploads, blobs, outputs, copies.
FILE_CHUNK_BYTES = MB
