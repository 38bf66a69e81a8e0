"""A stateful workspace is user-made content that the API itself walks, archives, restores and writes
inputs into, as root, on the host. Links the sandbox planted there must never make the API read or
write anything outside the workspace (here with one-shot jobs: every call restores the checkpoint)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from tests.conftest import upload
from tests.security.conftest import Hostile

STATEFUL = {"X-CodeAPI-Expected-Profile": "stateful"}
# What the sandbox plants: links to the host's (its own view's) system files and directories.
PLANT = (
    "ln -s /etc reports; ln -s / top; ln -s /etc/hostname copied.txt; ln -s ../.. up; "
    "mkdir real && ln -s .. real/back; echo mine > real/file.txt"
)


async def stateful(hostile: Hostile, code: str, hint: str, **extra: Any) -> dict[str, Any]:
    response = await hostile.client.post(
        "/exec", json={"lang": "bash", "code": code, "runtime_session_hint": hint, **extra}, headers=STATEFUL
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_planted_links_are_kept_as_links_and_never_followed(hostile: Hostile, tmp_path: Path) -> None:
    hint = f"v2:user:{secrets.token_hex(16)}"
    planted = await stateful(hostile, PLANT, hint)
    assert planted["stderr"] == ""
    assert [item["name"] for item in planted["files"]] == ["real/file.txt"]  # links are no output files
    # Restored from the checkpoint into a new job: the links are links again, pointing where they did.
    restored = await stateful(hostile, "for l in reports top copied.txt up real/back; do readlink $l; done", hint)
    assert restored["stdout"] == "/etc\n/\n/etc/hostname\n../..\n..\n"


async def test_an_input_delivered_through_a_planted_link_lands_inside_the_workspace(hostile: Hostile) -> None:
    hint = f"v2:user:{secrets.token_hex(16)}"
    canary = f"codeapi-canary-{secrets.token_hex(6)}"
    await stateful(hostile, PLANT, hint)
    uploaded = await upload(hostile.client, "x.txt", b"delivered\n")
    ref = {"id": uploaded["files"][0]["fileId"], "session_id": uploaded["session_id"], "name": f"reports/{canary}"}
    delivered = await stateful(hostile, f"ls -la reports | head -3; cat reports/{canary}", hint, files=[ref])
    assert not Path("/etc", canary).exists()  # the host's /etc: the API wrote through no link
    assert delivered["stdout"].endswith("delivered\n")
    assert "reports ->" not in delivered["stdout"]  # the link made way for a real directory
