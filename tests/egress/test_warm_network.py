"""ENABLE_SANDBOX_NETWORK on the warm Python path: the proxy and the session's installs work there too."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.conftest import ClientFactory, run
from tests.repl.conftest import wait_until_warm

INSTALL_AND_USE = (
    "import subprocess, sys\n"
    "done = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'inflection'], capture_output=True, text=True)\n"
    "print(done.returncode, done.stderr[-300:])\n"
    "import inflection\n"
    "print(inflection.camelize('warm_path'))\n"
)


async def test_warm_python_installs_from_pypi_and_keeps_it_for_the_session(
    make_client: ClientFactory, test_root: Path
) -> None:
    skill_deps = test_root / f"skill-deps-{uuid.uuid4().hex[:6]}"
    async with make_client(
        ENABLE_SANDBOX_NETWORK=True, SKILL_DEPS_PATH=str(skill_deps), MAX_EXECUTION_TIME=90, SANDBOX_UID=45001
    ) as client:
        await wait_until_warm(client)
        first = await run(client, "py", INSTALL_AND_USE)
        assert first["stdout"].splitlines()[-1] == "WarmPath", first
        again = await run(client, "py", "print(inflection.underscore('WarmPath'))", session_id=first["session_id"])
        assert again["stdout"] == "warm_path\n", again
    stored = list((skill_deps / "sessions").iterdir())
    assert len(stored) == 1 and (stored[0] / "python" / "inflection").is_dir()
