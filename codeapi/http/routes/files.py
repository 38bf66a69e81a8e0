"""Uploads, listings, object info, downloads and deletes (contract §5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from codeapi.errors import FileNotFound, FileTooLarge, InvalidRequest
from codeapi.http.deps import Services, caller, owner_id
from codeapi.http.multipart import ParsedForm, UploadedPart, parse_form
from codeapi.http.schemas import (
    BatchFileOut,
    BatchUploadResponse,
    ObjectInfo,
    UploadedFileOut,
    UploadResponse,
)
from codeapi.sessions.names import sanitize_name
from codeapi.storage.metadata.base import FileRecord
from codeapi.units import MB

router = APIRouter()


def iso_z(moment: datetime) -> str:
    """UTC with milliseconds and a Z: JavaScript would read a naive timestamp as local time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def read_upload(request: Request, services: Services) -> ParsedForm:
    form = await parse_form(
        request.headers.get("content-type", ""),
        request.stream(),
        services.max_file_bytes,
        services.max_files_per_session,
        services.spool_dir,
    )
    if not form.files:
        form.close()
        raise InvalidRequest("No file part in the upload (expected a 'file' field)", field="file")
    return form


def upload_owner(request: Request, form: ParsedForm) -> tuple[str | None, str | None]:
    """(owner id, entity id): a verified token's user, else the User-Id header or the resource id of a
    user-kind upload."""
    user_id = owner_id(
        request,
        request.headers.get("user-id") or (form.fields.get("id") if form.fields.get("kind") == "user" else None),
    )
    entity_id = form.fields.get("entity_id") or (
        form.fields.get("id") if form.fields.get("kind") in ("agent", "skill") else None
    )
    return user_id, entity_id


def is_read_only(form: ParsedForm) -> bool:
    """LibreChat uploads skill files with read_only=true: runs may read but not change them."""
    return form.fields.get("read_only", "").strip().lower() in ("true", "1", "yes")


async def store_part(
    services: Services, session_id: str, form: ParsedForm, part: UploadedPart, read_only: bool
) -> FileRecord:
    name = sanitize_name(part.filename, services.max_filename_length)
    if part.too_large:
        raise FileTooLarge(
            f"File {name} exceeds the maximum size of {services.max_file_bytes // MB} MB",
            field="file",
        )
    return await services.sessions.add_file(session_id, name, form.read(part), read_only=read_only)


@router.post("/upload", response_model=UploadResponse)
async def upload(request: Request, services: Services) -> UploadResponse:
    form = await read_upload(request, services)
    try:
        user_id, entity_id = upload_owner(request, form)
        session = await services.sessions.create(user_id=user_id, entity_id=entity_id)
        read_only = is_read_only(form)
        stored = [await store_part(services, session.session_id, form, part, read_only) for part in form.files]
    finally:
        form.close()
    return UploadResponse(
        message="success",
        storage_session_id=session.session_id,
        session_id=session.session_id,
        files=[UploadedFileOut(fileId=record.file_id, filename=record.name) for record in stored],
    )


@router.post("/upload/batch", response_model=BatchUploadResponse, response_model_exclude_none=True)
async def upload_batch(request: Request, services: Services) -> BatchUploadResponse:
    form = await read_upload(request, services)
    results: list[BatchFileOut] = []
    try:
        user_id, entity_id = upload_owner(request, form)
        session = await services.sessions.create(user_id=user_id, entity_id=entity_id)
        read_only = is_read_only(form)
        for part in form.files:
            try:
                record = await store_part(services, session.session_id, form, part, read_only)
            except InvalidRequest as error:
                results.append(BatchFileOut(status="error", filename=part.filename, error=error.message))
            else:
                results.append(BatchFileOut(status="success", filename=record.name, fileId=record.file_id))
    finally:
        form.close()
    succeeded = sum(item.status == "success" for item in results)
    failed = len(results) - succeeded
    message = "success" if failed == 0 else "error" if succeeded == 0 else "partial"
    return BatchUploadResponse(
        message=message,
        storage_session_id=session.session_id,
        session_id=session.session_id,
        files=results,
        succeeded=succeeded,
        failed=failed,
    )


def object_name(record: FileRecord) -> str:
    return f"{record.session_id}/{record.file_id}"


def etag(record: FileRecord) -> str:
    return f'"{record.file_id}"'  # a file's bytes never change under its id


def describe(record: FileRecord, detail: str) -> dict[str, Any]:
    session_id, file_id = record.session_id, record.file_id
    if detail == "summary":
        return {
            "name": object_name(record),
            "fileId": file_id,
            "lastModified": iso_z(record.created_at),
        }
    if detail == "simple":
        return {"id": file_id, "name": record.name, "path": f"/mnt/data/{record.name}"}
    return {
        "name": object_name(record),
        "id": file_id,
        "fileId": file_id,
        "storage_session_id": session_id,
        "session_id": session_id,
        "content": None,
        "size": record.size_bytes,
        "lastModified": iso_z(record.created_at),
        "etag": etag(record),
        "metadata": {"content-type": record.content_type, "original-filename": record.name},
        "contentType": record.content_type,
    }


async def reachable_file(request: Request, services: Services, session_id: str, file_id: str) -> FileRecord:
    """The file, unless it is not there or its session belongs to another tenant (the same 404)."""
    reachable, record = await asyncio.gather(
        services.sessions.reachable_from(session_id, caller(request).tenant_id),
        services.sessions.find_file(session_id, file_id),
    )
    if not reachable or record is None:
        raise FileNotFound()
    return record


@router.get("/files/{session_id}")
async def list_files(
    session_id: str, request: Request, services: Services, detail: str = Query("full")
) -> list[dict[str, Any]]:
    """An unknown or expired session is an empty list, never 404: LibreChat treats errors as expiry."""
    reachable, records = await asyncio.gather(
        services.sessions.reachable_from(session_id, caller(request).tenant_id),
        services.sessions.list_files(session_id),
    )
    if not reachable:
        return []
    return [describe(record, detail if detail in ("summary", "simple") else "full") for record in records]


@router.get("/sessions/{session_id}/objects/{file_id}", response_model=ObjectInfo)
async def object_info(session_id: str, file_id: str, request: Request, services: Services) -> ObjectInfo:
    record = await reachable_file(request, services, session_id, file_id)
    return ObjectInfo(
        name=object_name(record),
        originalFilename=record.name,
        size=record.size_bytes,
        lastModified=iso_z(record.created_at),
        etag=etag(record),
        contentType=record.content_type,
        readOnly=record.read_only,
    )


def content_disposition(name: str) -> str:
    """RFC 6266/5987: an ASCII fallback plus the exact UTF-8 name."""
    basename = name.rsplit("/", 1)[-1]
    fallback = "".join(
        char if char.isascii() and char.isprintable() and char not in '"\\' else "_" for char in basename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(basename, safe='')}"


@router.get("/download/{session_id}/{file_id}")
async def download(session_id: str, file_id: str, request: Request, services: Services) -> StreamingResponse:
    record = await reachable_file(request, services, session_id, file_id)
    chunks = services.sessions.read(record)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    except FileNotFound:
        raise FileNotFound() from None

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(
        body(),
        media_type=record.content_type,
        headers={
            "Content-Disposition": content_disposition(record.name),
            "Cache-Control": "private, max-age=3600",
            "Content-Length": str(record.size_bytes),
        },
    )


@router.delete("/files/{session_id}/{file_id}", status_code=204)
@router.delete("/sessions/{session_id}/objects/{file_id}", status_code=204)  # the official server's name for it
async def delete_file(session_id: str, file_id: str, request: Request, services: Services) -> None:
    await reachable_file(request, services, session_id, file_id)
    await services.sessions.delete_file(session_id, file_id)
