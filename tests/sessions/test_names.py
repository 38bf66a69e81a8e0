"""Names are sanitised to what the sandbox will see, or rejected with a 400."""

from __future__ import annotations

import pytest

from codeapi.errors import BadFilename
from codeapi.sessions.ids import is_id, new_id
from codeapi.sessions.names import sanitize_name


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("data.csv", "data.csv"),
        ("skills/demo/SKILL.md", "skills/demo/SKILL.md"),
        ("/mnt/data/out/x.png", "out/x.png"),
        ("a//b/./c.txt", "a/b/c.txt"),
        ("win\\path\\f.txt", "win/path/f.txt"),
        ("résumé 数据.txt", "résumé 数据.txt"),
    ],
)
def test_sanitize_keeps_subfolders_and_unicode(raw: str, clean: str) -> None:
    assert sanitize_name(raw, 255) == clean


@pytest.mark.parametrize("raw", ["", "   ", "/", "..", "../x", "a/../../x", "bad\x00name", "tab\tname", "x\x7f"])
def test_sanitize_rejects_traversal_control_characters_and_empty(raw: str) -> None:
    with pytest.raises(BadFilename):
        sanitize_name(raw, 255)


def test_sanitize_limits_length_in_bytes() -> None:
    assert sanitize_name("é" * 10, 20) == "é" * 10
    with pytest.raises(BadFilename):
        sanitize_name("é" * 11, 20)


def test_new_ids_are_21_char_nanoids_and_unique() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_id(value) for value in ids)
