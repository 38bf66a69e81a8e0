"""API_DEBUG's /config (secrets redacted) and the CORS headers a browser client needs."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.admin.conftest import MASTER_KEY, USER, running_service
from tests.conftest import API_KEY


async def test_debug_config_shows_the_configuration_with_every_secret_redacted(test_root: Path) -> None:
    overrides = {"API_DEBUG": True, "REDIS_PASSWORD": "redis-secret-pw", "S3_SECRET_KEY": "s3-secret-value"}
    async with running_service(test_root / f"debug-{uuid.uuid4().hex[:6]}", **overrides) as service:
        async with service.client(headers=USER) as client:
            response = await client.get("/config")
        async with service.client() as anonymous:
            assert (await anonymous.get("/config")).status_code == 401
    assert response.status_code == 200
    config = response.json()
    assert config["MAX_EXECUTION_TIME"] == 60 and config["API_DEBUG"] is True
    for name in ("API_KEY", "MASTER_API_KEY", "REDIS_PASSWORD", "S3_SECRET_KEY"):
        assert config[name] == "***", name
    for secret in (API_KEY, MASTER_KEY, "redis-secret-pw", "s3-secret-value"):
        assert secret not in response.text


async def test_without_debug_there_is_no_config_endpoint(test_root: Path) -> None:
    async with running_service(test_root / f"nodebug-{uuid.uuid4().hex[:6]}") as service:
        async with service.client(headers=USER) as client:
            assert (await client.get("/config")).status_code == 404


async def test_cors_lets_a_browser_read_the_download_name(test_root: Path) -> None:
    overrides = {"ENABLE_CORS": True, "CORS_ORIGINS": "http://app.example"}
    async with running_service(test_root / f"cors-{uuid.uuid4().hex[:6]}", **overrides) as service:
        async with service.client(headers={**USER, "origin": "http://app.example"}) as client:
            response = await client.get("/files/" + "A" * 21)
    assert response.headers["access-control-allow-origin"] == "http://app.example"
    exposed = {name.strip().lower() for name in response.headers["access-control-expose-headers"].split(",")}
    assert {"content-disposition", "x-request-id", "retry-after"} <= exposed
