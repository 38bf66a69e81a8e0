"""Streaming multipart/form-data for uploads: file parts go to size-capped temporary files as they arrive.

No part is ever held whole in memory, and a file over the limit is detected at the byte that
crosses it; the rest of that part is discarded while the parser moves on to the next part.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from codeapi.errors import InvalidRequest

MAX_FIELD_BYTES = 64 * 1024


@dataclass
class UploadedPart:
    filename: str
    spool: IO[bytes]
    size_bytes: int = 0
    too_large: bool = False


@dataclass
class ParsedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[UploadedPart] = field(default_factory=list)

    def close(self) -> None:
        for part in self.files:
            part.spool.close()


def decode_header_value(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class FormCollector:
    """Receives python-multipart's callbacks and sorts parts into fields and spooled files."""

    def __init__(self, spool_dir: Path | None, max_file_bytes: int, file_fields: tuple[str, ...]) -> None:
        self.form = ParsedForm()
        self.spool_dir = spool_dir
        self.max_file_bytes = max_file_bytes
        self.file_fields = file_fields
        self.header_name = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.field_name: str | None = None
        self.field_value = bytearray()
        self.current_file: UploadedPart | None = None

    def on_part_begin(self) -> None:
        self.headers = {}
        self.field_name = None
        self.field_value = bytearray()
        self.current_file = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name = b""
        self.header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = decode_header_value(params.get(b"name", b""))
        if b"filename" in params and name in self.file_fields:
            spool = tempfile.TemporaryFile(dir=self.spool_dir)
            self.current_file = UploadedPart(decode_header_value(params[b"filename"]), spool)
            self.form.files.append(self.current_file)
        else:
            self.field_name = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.current_file
        if part is None:
            if len(self.field_value) + (end - start) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"Form field '{self.field_name}' is too long", field=self.field_name)
            self.field_value += data[start:end]
            return
        if part.too_large:
            return
        part.size_bytes += end - start
        if part.size_bytes > self.max_file_bytes:
            part.too_large = True
            part.spool.truncate(0)
            return
        part.spool.write(data[start:end])

    def on_part_end(self) -> None:
        if self.current_file is not None:
            self.current_file.spool.seek(0)
        elif self.field_name:
            self.form.fields[self.field_name] = self.field_value.decode("utf-8", errors="replace")


async def parse_form(
    content_type: str,
    body: AsyncIterator[bytes],
    max_file_bytes: int,
    spool_dir: Path | None = None,
    file_fields: tuple[str, ...] = ("file", "files"),
) -> ParsedForm:
    media_type, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("Expected a multipart/form-data body with a boundary", field="body")
    collector = FormCollector(spool_dir, max_file_bytes, file_fields)
    callbacks = {name: getattr(collector, name) for name in dir(collector) if name.startswith("on_")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except InvalidRequest:
        collector.form.close()
        raise
    except ValueError as error:  # python-multipart's MultipartParseError derives from ValueError
        collector.form.close()
        raise InvalidRequest(f"Malformed multipart body: {error}", field="body") from None
    return collector.form


async def read_spool(spool: IO[bytes], chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    while chunk := spool.read(chunk_size):
        yield chunk


__all__ = ["ParsedForm", "UploadedPart", "parse_form", "read_spool"]
