"""The API may be started with signals ignored or blocked (``nohup`` ignores SIGHUP, a shell's
background job SIGINT and SIGQUIT); both survive an exec, so every sandboxed program would inherit
them. Programs must start as a new process does, in a one-shot jail and in a workspace's kept one."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from tests.apiserver import Replica, serving
from tests.conftest import API_KEY

LAUNCHER = ("env", "--ignore-signal=HUP", "--ignore-signal=INT", "--ignore-signal=QUIT", "--block-signal=USR2")
STATUS = "grep -E '^Sig(Blk|Ign)' /proc/self/status"
NOTHING = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
PYTHON = "print(open('/proc/self/status').read().count('SigBlk:\t0000000000000000'))"


async def test_signals_the_api_was_started_ignoring_or_blocking_pass_on_to_no_program(test_root: Path) -> None:
    with serving(Replica(test_root / f"signals-{secrets.token_hex(4)}", launcher=LAUNCHER)) as (replica,):
        assert "SigIgn" in Path(f"/proc/{replica.process.pid}/status").read_text()
        async with httpx.AsyncClient(base_url=replica.url, headers={"x-api-key": API_KEY}, timeout=60) as client:
            one_shot = await client.post("/exec", json={"lang": "bash", "code": STATUS})
            assert one_shot.json()["stdout"] == NOTHING
            stateful = {"lang": "bash", "code": STATUS, "runtime_session_hint": f"v2:user:{secrets.token_hex(16)}"}
            headers = {"X-CodeAPI-Expected-Profile": "stateful"}
            for _ in range(2):  # the first call of a workspace, then its kept jail's worker become bash
                assert (await client.post("/exec", json=stateful, headers=headers)).json()["stdout"] == NOTHING
            python = await client.post("/exec", json={"lang": "py", "code": PYTHON})
            assert python.json()["stdout"] == "1\n"
