"""Helpers both metadata backends share: exact timestamps and record (de)serialisation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from codeapi.storage.metadata.base import FileRecord, SessionRecord

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Integer microseconds since the epoch: exact, unlike float timestamps, and cheap to compare.

    A naive datetime is taken as UTC because every record documents its times as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def session_to_json(record: SessionRecord) -> str:
    return json.dumps(
        {
            "session_id": record.session_id,
            "created_at": to_micros(record.created_at),
            "expires_at": to_micros(record.expires_at),
            "user_id": record.user_id,
            "entity_id": record.entity_id,
        },
        separators=(",", ":"),
    )


def session_from_json(raw: str | bytes) -> SessionRecord:
    data: dict[str, Any] = json.loads(raw)
    return SessionRecord(
        session_id=data["session_id"],
        created_at=from_micros(data["created_at"]),
        expires_at=from_micros(data["expires_at"]),
        user_id=data["user_id"],
        entity_id=data["entity_id"],
    )


def file_to_json(record: FileRecord) -> str:
    return json.dumps(
        {
            "session_id": record.session_id,
            "file_id": record.file_id,
            "name": record.name,
            "size_bytes": record.size_bytes,
            "content_type": record.content_type,
            "created_at": to_micros(record.created_at),
            "expires_at": to_micros(record.expires_at),
            "blob_key": record.blob_key,
        },
        separators=(",", ":"),
    )


def file_from_json(raw: str | bytes) -> FileRecord:
    data: dict[str, Any] = json.loads(raw)
    return FileRecord(
        session_id=data["session_id"],
        file_id=data["file_id"],
        name=data["name"],
        size_bytes=data["size_bytes"],
        content_type=data["content_type"],
        created_at=from_micros(data["created_at"]),
        expires_at=from_micros(data["expires_at"]),
        blob_key=data["blob_key"],
    )


def oldest_first(records: list[FileRecord]) -> list[FileRecord]:
    """The one listing order of both backends; the id breaks ties between same-instant uploads."""
    return sorted(records, key=lambda record: (record.created_at, record.file_id))
