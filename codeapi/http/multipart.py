"""Streaming multipart/form-data for uploads: file parts go to one temporary file as they arrive.

No part is ever held whole in memory, and a file over the limit is detected at the byte that
crosses it; the rest of that part is discarded while the parser moves on to the next part.
All file parts of a request share one spool file (each part is a byte range of it), so a request
with thousands of parts holds one descriptor, and the parts are counted while they are parsed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from codeapi.errors import InvalidRequest, TooManyFiles
from codeapi.units import FILE_CHUNK_BYTES, KB

MAX_FIELD_BYTES = 64 * KB
# Plain fields a client sends (kind, id, version, entity_id, read_only): far fewer than this.
MAX_FIELDS = 64


@dataclass
class UploadedPart:
    filename: str
    offset: int  # where the part's bytes start in the form's spool
    size_bytes: int = 0
    too_large: bool = False


@dataclass
class ParsedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[UploadedPart] = field(default_factory=list)
    spool: IO[bytes] | None = None  # created with the first file part

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

    async def read(self, part: UploadedPart, chunk_size: int = FILE_CHUNK_BYTES) -> AsyncIterator[bytes]:
        """The part's bytes, in chunks."""
        assert self.spool is not None, "a form with file parts has a spool"
        position, end = part.offset, part.offset + part.size_bytes
        while position < end:
            chunk = os.pread(self.spool.fileno(), min(chunk_size, end - position), position)
            if not chunk:
                return
            position += len(chunk)
            yield chunk


def decode_header_value(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class FormCollector:
    """Receives python-multipart's callbacks and sorts parts into fields and spooled files."""

    def __init__(
        self, spool_dir: Path | None, max_file_bytes: int, max_files: int, file_fields: tuple[str, ...]
    ) -> None:
        self.form = ParsedForm()
        self.spool_dir = spool_dir
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.fields_seen = 0
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
            if len(self.form.files) >= self.max_files:
                raise TooManyFiles(f"At most {self.max_files} files per session", field="file")
            if self.form.spool is None:
                self.form.spool = tempfile.TemporaryFile(dir=self.spool_dir)
            self.current_file = UploadedPart(decode_header_value(params[b"filename"]), self.form.spool.tell())
            self.form.files.append(self.current_file)
        else:
            self.fields_seen += 1
            if self.fields_seen > MAX_FIELDS:
                raise InvalidRequest(f"At most {MAX_FIELDS} form fields besides the files", field="body")
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
        spool = self.form.spool
        assert spool is not None
        if part.size_bytes + (end - start) > self.max_file_bytes:
            part.too_large = True
            spool.truncate(part.offset)  # the part being written is the spool's tail
            spool.seek(part.offset)
            part.size_bytes = 0
            return
        spool.write(data[start:end])
        part.size_bytes += end - start

    def on_part_end(self) -> None:
        if self.current_file is not None and self.form.spool is not None:
            self.form.spool.flush()  # read back with pread on the descriptor
        elif self.field_name:
            self.form.fields[self.field_name] = self.field_value.decode("utf-8", errors="replace")


async def parse_form(
    content_type: str,
    body: AsyncIterator[bytes],
    max_file_bytes: int,
    max_files: int,
    spool_dir: Path | None = None,
    file_fields: tuple[str, ...] = ("file", "files"),
) -> ParsedForm:
    """The form's fields and file parts; raises TooManyFiles at the part over ``max_files``."""
    media_type, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("Expected a multipart/form-data body with a boundary", field="body")
    collector = FormCollector(spool_dir, max_file_bytes, max_files, file_fields)
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


__all__ = ["ParsedForm", "UploadedPart", "parse_form"]
