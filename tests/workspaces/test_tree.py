"""The workspace walk that gives up early: a small workspace is walked in the event loop, and a
large one must cost no more than the entries it was allowed before it goes to a thread."""

from __future__ import annotations

from pathlib import Path

from codeapi.workspaces.tree import walk, walk_at_most


def test_a_walk_within_its_bound_is_the_whole_walk(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("a.txt", "d/b.txt", "d/e/c.txt"):
        (tmp_path / name).write_text(name)
    (tmp_path / "link").symlink_to("a.txt")
    assert walk_at_most(tmp_path, 6) == walk(tmp_path)
    assert sorted(walk(tmp_path)) == ["a.txt", "d", "d/b.txt", "d/e", "d/e/c.txt", "link"]


def test_a_walk_past_its_bound_gives_up(tmp_path: Path) -> None:
    for index in range(50):
        (tmp_path / f"f{index}").touch()
    assert walk_at_most(tmp_path, 49) is None
    assert len(walk_at_most(tmp_path, 50) or {}) == 50
