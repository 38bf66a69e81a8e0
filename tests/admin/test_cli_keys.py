"""``codeapi keys``: the same key operations from the host's shell, seen at once by a running server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.admin.conftest import ADMIN_REDIS_DB, Service, running_service
from tests.conftest import API_KEY, shared_backend
from tests.servers import SeaweedServer

FILES = "/files/" + "A" * 21


def codeapi_keys(data_dir: Path, *args: str, **backend: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "API_KEY": API_KEY, "DATA_DIR": str(data_dir), **backend}
    return subprocess.run(
        [sys.prefix + "/bin/codeapi", "keys", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def status(service: Service, key: str) -> int:
    async with service.client(headers={"x-api-key": key}) as client:
        return (await client.get(FILES)).status_code


async def test_keys_made_and_changed_from_the_cli_take_effect_on_the_server(test_root: Path) -> None:
    root = test_root / f"cli-{uuid.uuid4().hex[:6]}"
    async with running_service(root) as service:
        data_dir = root / "data"
        created = codeapi_keys(data_dir, "create", "from-cli", "--per-minute", "50", "--metadata", "team=ops")
        assert created.returncode == 0, created.stderr
        key = created.stdout.splitlines()[0]
        assert await status(service, key) == 200
        listed = json.loads(codeapi_keys(data_dir, "list", "--json").stdout)
        mine = next(item for item in listed if item["name"] == "from-cli")
        assert mine["rate_limits"]["per_minute"] == 50 and mine["metadata"] == {"team": "ops"}
        assert [item["source"] for item in listed].count("environment") == 1
        assert key not in json.dumps(listed) and API_KEY not in json.dumps(listed)
        table = codeapi_keys(data_dir, "list").stdout
        assert "from-cli" in table and key not in table
        short_hash = mine["key_hash"][:10]
        assert codeapi_keys(data_dir, "disable", short_hash).returncode == 0
        assert await status(service, key) == 401
        assert codeapi_keys(data_dir, "enable", short_hash).returncode == 0
        assert await status(service, key) == 200
        assert codeapi_keys(data_dir, "revoke", short_hash).returncode == 0
        assert await status(service, key) == 401


def test_an_unknown_or_too_short_hash_is_a_clear_error(tmp_path: Path) -> None:
    unknown = codeapi_keys(tmp_path, "revoke", "0123456789")
    assert unknown.returncode == 1 and "no managed key" in unknown.stderr
    short = codeapi_keys(tmp_path, "disable", "01")
    assert short.returncode == 1 and "at least 8" in short.stderr
    bad_limit = codeapi_keys(tmp_path, "create", "x", "--per-minute", "0")
    assert bad_limit.returncode == 2


async def test_the_cli_reaches_the_shared_store_when_redis_is_configured(
    test_root: Path, api_seaweed: SeaweedServer
) -> None:
    backend = shared_backend(api_seaweed, redis_db=ADMIN_REDIS_DB)
    root = test_root / f"cli-redis-{uuid.uuid4().hex[:6]}"
    async with running_service(root, **backend) as service:
        redis_url = str(backend["REDIS_URL"])
        created = codeapi_keys(root / "cli-data", "create", "shared-cli", REDIS_URL=redis_url)
        assert created.returncode == 0, created.stderr
        key = created.stdout.splitlines()[0]
        assert await status(service, key) == 200
        key_hash = hashlib.sha256(key.encode()).hexdigest()
        assert codeapi_keys(root / "cli-data", "revoke", key_hash, REDIS_URL=redis_url).returncode == 0
        assert await status(service, key) == 401
