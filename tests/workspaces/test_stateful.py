"""Stateful runtime sessions through the real API, as LibreChat's stateful agents use them (contract §9.2):
the stateful profile's header and a ``runtime_session_hint``; /mnt/data persists across calls in every
language, every call is a new process, and nobody else's hint reaches the workspace."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeapi.execution.stateful import INLINE_WALK_ENTRIES
from tests.conftest import API_KEY, ClientFactory, running_client, upload
from tests.conftest import test_settings as settings_for
from tests.repl.conftest import pool_of

STATEFUL = {"X-CodeAPI-Expected-Profile": "stateful"}
MASTER_KEY = "master-key-0123456789abcdef"


def new_hint() -> str:
    return f"v2:user:{secrets.token_hex(16)}"


async def call(client: httpx.AsyncClient, lang: str, code: str, hint: str, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/exec", json={"lang": lang, "code": code, "runtime_session_hint": hint, **extra}, headers=STATEFUL
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-CodeAPI-Execution-Profile"] == "stateful"
    body: dict[str, Any] = response.json()
    return body


async def test_files_persist_across_calls_in_every_language(client: httpx.AsyncClient) -> None:
    hint = new_hint()
    prewarm = await call(client, "bash", "true", hint)
    assert prewarm["runtime_status"] == "new"
    assert prewarm["runtime_session_id"].startswith("rt_")
    wrote = await call(client, "bash", "mkdir -p notes && echo from-bash > notes/a.txt", hint)
    assert wrote["runtime_status"] == "reused"
    assert wrote["runtime_session_id"] == prewarm["runtime_session_id"]
    assert [item["name"] for item in wrote["files"]] == ["notes/a.txt"]
    python = await call(
        client, "py", "print(open('notes/a.txt').read().strip())\n_ = open('b.txt', 'w').write('py')", hint
    )
    assert python["stdout"] == "from-bash\n", python["stderr"]
    assert [item["name"] for item in python["files"]] == ["b.txt"]
    js = await call(client, "js", "const fs = require('fs'); console.log(fs.readFileSync('b.txt', 'utf8'))", hint)
    assert js["stdout"] == "py\n", js["stderr"]
    assert js["files"] == []
    assert len({body["session_id"] for body in (prewarm, wrote, python, js)}) == 1


async def test_every_call_is_a_new_process(client: httpx.AsyncClient) -> None:
    hint = new_hint()
    await call(client, "py", "import os\nkept = 1\nos.chdir('/tmp')", hint)
    second = await call(client, "py", "import os\nprint(os.getcwd())\nprint(kept)", hint)
    assert second["stdout"] == "/mnt/data\n"
    assert "NameError" in second["stderr"]


async def test_a_call_that_comes_before_the_last_ones_response_is_out_is_a_new_process_too(
    client: httpx.AsyncClient,
) -> None:
    """The worker a call used is replaced after its response is sent, or when the next call comes
    first: calls on one workspace sent together run one after the other, each in a new process."""
    hint = new_hint()
    await call(client, "bash", "true", hint)
    code = "print('kept' in globals())\nkept = 1"
    answers = await asyncio.gather(*(call(client, "py", code, hint) for _ in range(3)))
    assert [answer["stdout"] for answer in answers] == ["False\n"] * 3


async def test_deletions_persist_and_are_reported(client: httpx.AsyncClient) -> None:
    hint = new_hint()
    await call(client, "bash", "echo 1 > keep.txt; echo 2 > drop.txt; mkdir -p d/e && echo 3 > d/e/f.txt", hint)
    removed = await call(client, "bash", "rm drop.txt; rm -r d", hint)
    assert sorted(removed["deleted_files"]) == ["d/e/f.txt", "drop.txt"]
    listing = await call(client, "bash", "find . -type f | sort", hint)
    assert listing["stdout"] == "./keep.txt\n"


async def test_changes_in_a_workspace_too_large_to_walk_inline_are_found(client: httpx.AsyncClient) -> None:
    hint = new_hint()
    await call(client, "bash", f"mkdir many && touch many/{{1..{INLINE_WALK_ENTRIES * 2}}}", hint)
    changed = await call(client, "bash", "echo x > many/7; rm many/8", hint)
    assert [item["name"] for item in changed["files"]] == ["many/7"]
    assert changed["deleted_files"] == ["many/8"]


async def test_the_hint_is_ignored_without_the_stateful_profile(client: httpx.AsyncClient) -> None:
    hint = new_hint()
    plain = await client.post("/exec", json={"lang": "bash", "code": "echo x > f.txt", "runtime_session_hint": hint})
    assert plain.status_code == 200
    assert "runtime_session_id" not in plain.json()
    assert plain.headers["X-CodeAPI-Execution-Profile"] == "default"
    stateful = await call(client, "bash", "ls", hint)
    assert stateful["runtime_status"] == "new"
    assert stateful["stdout"] == ""


async def test_two_users_with_one_hint_never_share_a_workspace(client: httpx.AsyncClient) -> None:
    hint = new_hint()
    alice = await call(client, "bash", "echo secret > mine.txt", hint, user_id="alice")
    bob = await call(client, "bash", "ls; cat mine.txt 2>&1 || true", hint, user_id="bob")
    assert bob["runtime_session_id"] != alice["runtime_session_id"]
    assert bob["runtime_status"] == "new"
    assert "secret" not in bob["stdout"]
    again = await call(client, "bash", "cat mine.txt", hint, user_id="alice")
    assert again["stdout"] == "secret\n"


async def test_an_input_is_delivered_once_and_then_belongs_to_the_workspace(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "data.csv", b"a\n1\n")
    ref = {"id": uploaded["files"][0]["fileId"], "session_id": uploaded["session_id"], "name": "data.csv"}
    hint = new_hint()
    first = await call(client, "bash", "cat data.csv; echo 2 >> data.csv", hint, files=[ref])
    assert first["stdout"] == "a\n1\n"
    second = await call(client, "bash", "cat data.csv", hint, files=[ref])  # LibreChat repeats its references
    assert second["stdout"] == "a\n1\n2\n"


async def test_calls_on_one_runtime_session_are_serialised(client: httpx.AsyncClient) -> None:
    hint = new_hint()
    await call(client, "bash", "touch log.txt", hint)
    code = "echo start-{0} >> log.txt; sleep 0.5; echo end-{0} >> log.txt"
    await asyncio.gather(*(call(client, "bash", code.format(marker), hint) for marker in "ab"))
    lines = (await call(client, "bash", "cat log.txt", hint))["stdout"].split()
    assert sorted(lines) == ["end-a", "end-b", "start-a", "start-b"]
    assert [line.split("-")[1] for line in lines[0:2]] == [lines[0].split("-")[1]] * 2  # one whole call, then the other


@pytest.fixture(scope="module")
async def limited(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = {
        "RUNTIME_SESSION_CHECKPOINT_MAX_MB": 1,
        "RUNTIME_SESSION_MAX_PER_USER": 2,
        "RUNTIME_SESSION_IDLE_SECONDS": 2,
        "MAX_FILES_PER_SESSION": 4,
        "MASTER_API_KEY": MASTER_KEY,
    }
    async with make_client(**settings) as client:
        yield client


async def test_a_workspace_over_the_cap_is_not_kept_and_says_so(limited: httpx.AsyncClient) -> None:
    hint = new_hint()
    await call(limited, "bash", "echo small > small.txt", hint)
    big = await call(limited, "bash", "head -c 2000000 /dev/zero > big.bin", hint)
    assert "over the limit of 1 MB" in big["stderr"]
    after = await call(limited, "bash", "ls", hint)
    assert after["stdout"] == "small.txt\n"


async def test_an_idle_workspace_starts_new(limited: httpx.AsyncClient) -> None:
    hint = new_hint()
    await call(limited, "bash", "echo x > x.txt", hint)
    await asyncio.sleep(2.5)  # RUNTIME_SESSION_IDLE_SECONDS=2 is the condition under test
    after = await call(limited, "bash", "ls", hint)
    assert after["runtime_status"] == "new"
    assert after["stdout"] == ""


async def test_a_users_oldest_runtime_session_is_reclaimed_past_the_cap(limited: httpx.AsyncClient) -> None:
    first, second, third = new_hint(), new_hint(), new_hint()
    for hint in (first, second, third):
        await call(limited, "bash", "echo x > x.txt", hint, user_id="capped")
    assert (await call(limited, "bash", "ls", second, user_id="capped"))["runtime_status"] == "reused"
    assert (await call(limited, "bash", "ls", first, user_id="capped"))["runtime_status"] == "new"


async def test_admin_lists_runtime_sessions_with_usage_and_ends_one(limited: httpx.AsyncClient) -> None:
    hint = new_hint()
    await call(limited, "bash", "echo x > x.txt", hint, user_id="admin-view")
    made = await call(limited, "py", "print(1)", hint, user_id="admin-view")
    admin = {"x-api-key": MASTER_KEY}
    listing = (await limited.get("/api/v1/admin/runtime-sessions", headers=admin)).json()
    [entry] = [item for item in listing["runtime_sessions"] if item["runtime_session_id"] == made["runtime_session_id"]]
    assert entry["usage"]["calls"] == 2
    assert entry["workspace_bytes"] == 2
    assert (await limited.get("/api/v1/admin/runtime-sessions")).status_code in (401, 403)
    ended = await limited.delete(f"/api/v1/admin/runtime-sessions/{made['runtime_session_id']}", headers=admin)
    assert ended.json() == {"ended": True, "runtime_session_id": made["runtime_session_id"]}
    after = await call(limited, "bash", "ls", hint, user_id="admin-view")
    assert (after["runtime_status"], after["stdout"]) == ("new", "")
    missing = await limited.delete(f"/api/v1/admin/runtime-sessions/{made['runtime_session_id']}x", headers=admin)
    assert missing.status_code == 404


async def test_outputs_past_the_files_limit_go_on_in_a_new_files_session(limited: httpx.AsyncClient) -> None:
    """A workspace lives for hours and attaches every call's changes, so its files session fills up
    (MAX_FILES_PER_SESSION=4 here): its outputs then go on in a new one, and the full one's files stay
    the workspace's own: LibreChat, which repeats its references, never delivers them over newer ones."""
    hint = new_hint()
    first = await call(limited, "bash", "for name in a b c; do echo $name > $name.txt; done", hint)
    second = await call(limited, "bash", "echo d > d.txt; echo e > e.txt", hint)
    assert [item["name"] for item in second["files"]] == ["d.txt", "e.txt"]
    assert second["session_id"] != first["session_id"]
    downloaded = await limited.get(f"/download/{first['session_id']}/{first['files'][0]['id']}")
    assert downloaded.content == b"a\n"
    first_a = {"id": first["files"][0]["id"], "session_id": first["session_id"], "name": "a.txt"}
    await call(limited, "bash", "echo newer > a.txt", hint)
    after = await call(limited, "bash", "cat a.txt; ls | wc -l", hint, files=[first_a])
    assert after["stdout"] == "newer\n5\n"
    listed = (await limited.get(f"/files/{second['session_id']}")).json()
    assert len(listed) <= 4


async def test_a_workspace_survives_an_api_restart(test_root: Path) -> None:
    """Many calls (full and incremental layers, deletions), then a new process on the same data."""
    root = test_root / f"restart-{secrets.token_hex(4)}"
    root.mkdir()
    root.chmod(0o711)
    hint = new_hint()
    headers = {"x-api-key": API_KEY}
    expected = []
    async with running_client(settings_for(root), headers) as first:
        for index in range(12):
            await call(first, "bash", f"echo {index} > f{index}.txt; rm -f f{index - 3}.txt", hint)
        expected = (await call(first, "bash", "ls | sort | tr '\\n' ' '", hint))["stdout"]
    async with running_client(settings_for(root), headers) as second:
        after = await call(second, "bash", "ls | sort | tr '\\n' ' '; cat f11.txt", hint)
    assert after["runtime_status"] == "reused"
    assert after["stdout"] == f"{expected}11\n"


async def test_a_workspace_whose_checkpoint_is_gone_starts_over_and_says_so(test_root: Path) -> None:
    """Layers deleted from the blob store behind codeapi's back: the next call on another process
    starts the workspace new (not an error on every call from then on), and says why it is empty."""
    root = test_root / f"lost-{secrets.token_hex(4)}"
    root.mkdir()
    root.chmod(0o711)
    hint = new_hint()
    headers = {"x-api-key": API_KEY}
    async with running_client(settings_for(root), headers) as first:
        made = await call(first, "bash", "echo 1 > a.txt", hint)
    [layers] = [path for path in (root / "data").rglob(made["runtime_session_id"]) if path.is_dir()]
    shutil.rmtree(layers)
    async with running_client(settings_for(root), headers) as second:
        after = await call(second, "bash", "ls; echo 2 > b.txt", hint)
        again = await call(second, "bash", "ls", hint)
    assert (after["runtime_status"], after["stdout"]) == ("new", "")
    assert "could not be found in storage: it started over, empty" in after["stderr"]
    assert after["runtime_session_id"] == made["runtime_session_id"]
    assert (again["runtime_status"], again["stdout"], again["stderr"]) == ("reused", "b.txt\n", "")


BASH_PROGRAMS = {
    "exit status": ("echo out; echo err >&2; exit 3", []),
    "arguments": ('printf "%s|" "$@"; echo; echo "$0" | sed "s|.*/||"', ["a b", "c"]),
    "environment": ("env | sort | grep -v -e '^_=' -e '^PWD=' -e '^SHLVL=' -e '^OLDPWD='", []),
    # (a one-shot bash is its jail's pid 1, which a SIGKILL from inside cannot end: not compared)
    "a child killed by a signal": ("exec 2>/dev/null; sleep 5 & kill -9 $!; wait $!; echo status $?", []),
    "working directory": ("pwd; ls -d /mnt/data /code", []),
    # nothing open but stdin, stdout, stderr (and bash's own script fd): no way back to the API's link
    "descriptors": ("cd /proc/$$/fd && echo *", []),
    # what the interpreter it replaced ignored (SIGPIPE, SIGXFSZ) is not ignored here either
    "signal dispositions": ("grep -E '^Sig(Ign|Blk|Cgt)' /proc/self/status; yes | head -c 2", []),
    "identity and privileges": (
        "id -un; id -Gn; [ $(id -u) -ge 1000 ] && echo unprivileged; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status",
        [],
    ),
    # but the CPU time: a kept jail's covers its life, and the call's wall-clock deadline bounds it
    "limits": ("ulimit -a | grep -v '^cpu time'", []),
}


@pytest.mark.parametrize("case", sorted(BASH_PROGRAMS))
async def test_bash_in_a_workspace_runs_as_a_one_shot_bash_does(client: httpx.AsyncClient, case: str) -> None:
    """A workspace's bash is its kept jail's fresh worker, become bash: what it sees and what the
    response says must be what a default-profile run gives."""
    code, args = BASH_PROGRAMS[case]
    one_shot = (await client.post("/exec", json={"lang": "bash", "code": code, "args": args})).json()
    hint = new_hint()
    await call(client, "bash", "true", hint)  # the workspace's kept jail now serves the next call
    stateful = await call(client, "bash", code, hint, args=args)
    for field in ("stdout", "stderr"):
        assert stateful[field] == one_shot[field], field
    assert (stateful["run"]["status"], stateful["run"]["code"]) == (one_shot["run"]["status"], one_shot["run"]["code"])


async def test_tmp_and_home_are_a_calls_scratch(client: httpx.AsyncClient) -> None:
    """LibreChat tells the model /tmp is same-call scratch: only /mnt/data carries over."""
    hint = new_hint()
    await call(client, "bash", "echo t > /tmp/scratch.txt; echo h > ~/scratch.txt; mkdir -p ~/.cache/x", hint)
    after = await call(
        client,
        "py",
        "import os\nprint(sorted(os.listdir('/tmp')), os.path.exists(os.path.expanduser('~/scratch.txt')))",
        hint,
    )
    assert after["stdout"] == "[] False\n", after["stderr"]
    js = "require('fs').writeFileSync(require('os').homedir() + '/js.txt', 'j'); console.log('wrote')"
    assert (await call(client, "js", js, hint))["stdout"] == "wrote\n"  # a one-shot jail on the same home
    listed = await call(client, "bash", "ls -A ~ | grep -v '^.config$'; echo end", hint)
    assert listed["stdout"] == "end\n", listed["stdout"]


async def test_a_bash_that_ends_itself_or_overruns_leaves_a_workspace_that_serves_on(client: httpx.AsyncClient) -> None:
    """bash replaces the jail's worker: however it ends, a new worker serves the next call there."""
    hint = new_hint()
    await call(client, "bash", "echo kept > kept.txt", hint)
    killed = await call(client, "bash", "echo before; kill -9 $$; echo after", hint)
    assert (killed["stdout"], killed["run"]["status"], killed["run"]["signal"]) == ("before\n", "SG", "SIGKILL")
    overran = await call(client, "bash", "sleep 600 & echo started; wait", hint, timeout=1000)
    assert (overran["stdout"], overran["run"]["status"]) == ("started\n", "TO")
    after = await call(client, "bash", "cat kept.txt; cat /proc/[0-9]*/comm | grep -c sleep", hint)
    assert after["stdout"] == "kept\n0\n", after  # what the overrun started is gone


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


# The worker's count of minor faults (the jail's own /proc), read where the call's code begins:
# Python's first line runs in the worker, bash is the worker's child.
WORKER_FAULTS_SO_FAR = {
    "py": "print(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[7])",
    "bash": "cut -d')' -f2 /proc/$PPID/stat | cut -d' ' -f9",
}
# A new worker that was not prepared takes ~680 faults on the way to Python's first line (copying
# the zygote's pages it writes, mapping code it runs) and 80-95 to start bash; a prepared one ~105
# and 40-55.
MAX_FAULTS_BEFORE_THE_CODE = {"py": 250, "bash": 70}


@pytest.mark.parametrize("lang", ["py", "bash"])
async def test_the_next_process_walks_the_call_path_between_calls_not_in_the_call(
    client: httpx.AsyncClient, lang: str
) -> None:
    hint = new_hint()
    first = await call(client, "bash", "true", hint)
    sandbox = pool_of(client).hot[first["runtime_session_id"]]
    assert await sandbox.ready()
    before = minor_faults(sandbox.jail.worker_pid)  # stopped: nothing changes it until the call
    during = await call(client, lang, WORKER_FAULTS_SO_FAR[lang], hint)
    assert int(during["stdout"]) - before < MAX_FAULTS_BEFORE_THE_CODE[lang]
