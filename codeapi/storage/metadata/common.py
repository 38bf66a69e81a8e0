"""Helpers both metadata backends share: exact timestamps and record (de)serialisation."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, get_type_hints

from codeapi.storage.metadata.base import FileRecord, SessionRecord, StateRecord

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


Record = TypeVar("Record", SessionRecord, FileRecord, StateRecord)


FIELD_TYPES: dict[type, dict[str, Any]] = {
    kind: get_type_hints(kind) for kind in (SessionRecord, FileRecord, StateRecord)
}


class StoredFields(Protocol):
    """Field values by name: a decoded JSON object or an SQLite row."""

    def __getitem__(self, name: str) -> Any: ...


def to_row(record: SessionRecord | FileRecord | StateRecord) -> dict[str, Any]:
    """A record's fields as both backends store them: times as integer microseconds, flags as 0/1."""
    return {field.name: stored(getattr(record, field.name)) for field in fields(record)}


def stored(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_micros(value)
    if isinstance(value, bool):
        return int(value)
    return value


def from_row(kind: type[Record], row: StoredFields) -> Record:
    """A record from its stored fields: a decoded JSON object or an SQLite row. A field added
    later (it has a default) may be missing from what an older version stored."""
    types = FIELD_TYPES[kind]
    values: dict[str, Any] = {}
    for field in fields(kind):
        try:
            values[field.name] = loaded(row[field.name], types[field.name])
        except (KeyError, IndexError):
            if field.default is MISSING:
                raise
    return kind(**values)


def loaded(value: Any, kind: Any) -> Any:
    if kind is datetime:
        return from_micros(value)
    if kind is bool:
        return bool(value)
    return value


def to_json(record: SessionRecord | FileRecord | StateRecord) -> str:
    return json.dumps(to_row(record), separators=(",", ":"))


def from_json(kind: type[Record], raw: str | bytes) -> Record:
    return from_row(kind, json.loads(raw))


def columns(kind: type[SessionRecord | FileRecord | StateRecord]) -> str:
    """The record's fields as a column list, in the order ``to_row`` gives their values."""
    return ", ".join(field.name for field in fields(kind))


def oldest_first(records: list[FileRecord]) -> list[FileRecord]:
    """The one listing order of both backends; the id breaks ties between same-instant uploads."""
    return sorted(records, key=lambda record: (record.created_at, record.file_id))
