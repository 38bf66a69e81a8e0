"""LibreChat's stateful route for real: @librechat/agents 3.9.2's code and bash tools built as LibreChat
builds them for an agent with stateful code sessions (statefulSessions, executionProfile 'stateful',
runtimeSessionHint, the LIBRECHAT_CODE_BASEURL_STATEFUL route), LibreChat's prewarm call, and servers
started from docs/librechat.md's blocks, on both backends. Each run_client is one LibreChat turn: a new
Node process, so nothing carries over on the client's side."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.librechat.conftest import UID_BASE, KeyPair, Server, run_client, start, stateful_hint


def someone(name: str, tenant: str = "acme") -> dict[str, str]:
    return {"id": f"{name}-{secrets.token_hex(4)}", "tenantId": tenant}


def jwt_env(server: Server, pair: KeyPair) -> dict[str, str]:
    return server.librechat_env("jwt", pair, "stateful")


def turn(agents: Path, env: dict[str, str], user: dict[str, str], hint: str, *calls: dict[str, Any]) -> list[Any]:
    ran = run_client(agents, env, user, stateful={"hint": hint}, calls=list(calls))
    results: list[Any] = ran["results"]
    for result in results:
        assert "error" not in result, ran
    return results


def bash(command: str) -> dict[str, Any]:
    return {"tool": "bash_tool", "code": command, "continue": True}


def code(lang: str, source: str) -> dict[str, Any]:
    return {"tool": "execute_code", "lang": lang, "code": source, "continue": True}


PREWARM = {"tool": "prewarm"}


def runtime(result: dict[str, Any]) -> tuple[str, str]:
    artifact = result["artifact"]
    return artifact["runtime_session_id"], artifact["runtime_status"]


def test_files_carry_over_from_bash_to_python_across_turns(
    librechat_agents: Path, jwt_server: Server, key_pair: KeyPair
) -> None:
    env = jwt_env(jwt_server, key_pair)
    user = someone("alice")
    hint = stateful_hint(user["id"])
    prewarm, wrote, read = turn(
        librechat_agents,
        env,
        user,
        hint,
        PREWARM,
        bash("mkdir -p notes && printf 'from bash' > notes/a.txt && printf '#!/bin/sh\\necho run' > run"),
        code("py", "print(open('notes/a.txt').read())\nopen('b.csv', 'w').write('x,y\\n1,2\\n')"),
    )
    # The prewarm answers 200 with the stateful profile's echo: it started the user's workspace.
    assert prewarm["prewarm"]["status"] == 200, prewarm
    warm = prewarm["prewarm"]["body"]
    assert (warm["runtime_session_id"][:3], warm["runtime_status"]) == ("rt_", "new"), warm
    assert runtime(wrote) == (warm["runtime_session_id"], "reused")
    assert sorted(item["name"] for item in wrote["artifact"]["files"]) == ["notes/a.txt", "run"]
    assert read["content"].startswith("stdout:\nfrom bash"), read
    assert runtime(read) == (warm["runtime_session_id"], "reused")
    assert [item["name"] for item in read["artifact"]["files"]] == ["b.csv"]
    # A later turn (a new client, a new token): the prewarm and every call find the same workspace.
    again, listed, js = turn(
        librechat_agents,
        env,
        user,
        hint,
        PREWARM,
        bash("chmod +x run && ./run && ls -R | sort | tr '\\n' ' '"),
        code("js", "console.log(require('fs').readFileSync('b.csv', 'utf8').trim())"),
    )
    assert (again["prewarm"]["body"]["runtime_status"], again["prewarm"]["body"]["stdout"]) == ("reused", "")
    assert listed["content"].startswith("stdout:\nrun\n"), listed
    assert "a.txt b.csv notes run" in listed["content"]
    assert js["content"].startswith("stdout:\nx,y\n1,2"), js
    assert {runtime(result) for result in (listed, js)} == {(warm["runtime_session_id"], "reused")}


def test_every_call_is_a_new_process(librechat_agents: Path, jwt_server: Server, key_pair: KeyPair) -> None:
    user = someone("carol")
    first, second, _, shell = turn(
        librechat_agents,
        jwt_env(jwt_server, key_pair),
        user,
        stateful_hint(user["id"]),
        code("py", "import os\nkept = 41\nos.chdir('/tmp')\nopen('/mnt/data/kept.txt', 'w').write('42')"),
        code("py", "import os\nprint(os.getcwd(), open('kept.txt').read())\nprint(kept)"),
        bash("export GONE=1; cd /tmp"),
        bash('echo "[$GONE]" $(pwd) $(cat kept.txt)'),
    )
    assert runtime(first)[1] == "new"
    assert second["content"].startswith("stdout:\n/mnt/data 42\n"), second
    assert "NameError" in second["content"]
    assert shell["content"].startswith("stdout:\n[] /mnt/data 42"), shell


def test_tmp_and_home_do_not_survive_the_call(librechat_agents: Path, jwt_server: Server, key_pair: KeyPair) -> None:
    """What LibreChat tells the model of the stateful route: /tmp is same-call scratch only."""
    user = someone("dave")
    write = "echo x > /tmp/t.txt; echo x > ~/h.txt; echo x > kept.txt"
    _, looked = turn(
        librechat_agents,
        jwt_env(jwt_server, key_pair),
        user,
        stateful_hint(user["id"]),
        bash(write),
        bash("ls /tmp/t.txt ~/h.txt kept.txt 2>/dev/null | wc -l"),
    )
    assert looked["content"].split("\n")[:2] == ["stdout:", "1"], looked  # kept.txt only


def test_two_users_with_one_hint_never_see_each_others_files(
    librechat_agents: Path, jwt_server: Server, key_pair: KeyPair
) -> None:
    """LibreChat's older hints (`v1:user`) were the same for every user; ours never let that matter."""
    env = jwt_env(jwt_server, key_pair)
    hint = f"v1:user:{secrets.token_hex(4)}"
    alice, bob = someone("alice"), someone("bob")
    globex_alice = {"id": alice["id"], "tenantId": "globex"}  # another tenant's user of the same id
    [written] = turn(librechat_agents, env, alice, hint, bash("printf alice-secret > secret.txt"))
    peek = "ls; cat secret.txt 2>/dev/null || echo nothing"
    for other in (bob, globex_alice):
        warm, peeked = turn(librechat_agents, env, other, hint, PREWARM, bash(peek))
        assert warm["prewarm"]["body"]["runtime_status"] == "new"
        assert warm["prewarm"]["body"]["runtime_session_id"] != runtime(written)[0]
        assert peeked["content"].startswith("stdout:\nnothing"), peeked
        assert runtime(peeked)[0] == warm["prewarm"]["body"]["runtime_session_id"]
    [mine] = turn(librechat_agents, env, alice, hint, code("py", "print(open('secret.txt').read())"))
    assert mine["content"].startswith("stdout:\nalice-secret"), mine
    assert runtime(mine) == (runtime(written)[0], "reused")


@pytest.fixture(scope="module")
def api_key_server(test_root: Path, key_pair: KeyPair) -> Iterator[Server]:
    """The doc's API key block with its stateful route's block (embedded backend)."""
    yield from start(test_root / "librechat-stateful-api-key", ("api-key", "stateful"), key_pair, UID_BASE + 256)


def test_with_an_api_key_users_are_told_apart_by_user_id(
    librechat_agents: Path, api_key_server: Server, key_pair: KeyPair
) -> None:
    env = api_key_server.librechat_env("api-key", key_pair, "stateful-api-key")
    hint = f"v1:user:{secrets.token_hex(4)}"
    alice, bob = {"id": f"alice-{secrets.token_hex(4)}"}, {"id": f"bob-{secrets.token_hex(4)}"}
    ran = run_client(
        librechat_agents,
        env,
        alice,
        stateful={"hint": hint},
        calls=[PREWARM, bash("printf mine > mine.txt"), code("py", "print(open('mine.txt').read())")],
    )
    prewarm, wrote, read = ran["results"]
    # LibreChat's prewarm cannot carry a key in its URL: Node's fetch refuses it before sending.
    assert "includes credentials" in prewarm["error"], prewarm
    assert runtime(wrote)[1] == "new"
    assert read["content"].startswith("stdout:\nmine"), read
    assert runtime(read) == (runtime(wrote)[0], "reused")
    [theirs] = turn(librechat_agents, env, bob, hint, bash("ls; cat mine.txt 2>/dev/null || echo nothing"))
    assert theirs["content"].startswith("stdout:\nnothing"), theirs
    assert runtime(theirs)[0] != runtime(wrote)[0]
