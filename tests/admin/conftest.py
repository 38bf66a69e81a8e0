"""Apps with a master key on both backends, reached from chosen client addresses (the lockout is per IP)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from codeapi.app import create_app
from tests.conftest import API_KEY, BACKENDS, shared_backend, test_settings

MASTER_KEY = "master-key-0123456789abcdef"
ADMIN_REDIS_DB = 11  # its own database: lockouts made here must not refuse other suites' clients
ADMIN = {"x-api-key": MASTER_KEY}
USER = {"x-api-key": API_KEY}


@dataclass
class Service:
    """One running app; ``client(ip)`` reaches it as if from that address."""

    app: FastAPI

    @asynccontextmanager
    async def client(
        self, ip: str = "127.0.0.1", headers: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://codeapi.test", headers=headers, timeout=60
        ) as client:
            yield client


@asynccontextmanager
async def running_service(root: Path, **overrides: Any) -> AsyncIterator[Service]:
    root.mkdir(parents=True)
    root.chmod(0o711)
    values = {"MASTER_API_KEY": MASTER_KEY, "REPL_ENABLED": False, **overrides}
    app = create_app(test_settings(root, **values))
    async with app.router.lifespan_context(app):
        yield Service(app)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "shared":
        return shared_backend(request.getfixturevalue("api_seaweed"), redis_db=ADMIN_REDIS_DB)
    return {}


@pytest.fixture(scope="module")
async def service(test_root: Path, backend: dict[str, Any]) -> AsyncIterator[Service]:
    async with running_service(test_root / f"admin-{uuid.uuid4().hex[:8]}", **backend) as running:
        yield running


@pytest.fixture
async def admin(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with service.client(headers=ADMIN) as client:
        yield client


async def create_key(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post("/api/v1/admin/keys", json={"name": "tenant", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
