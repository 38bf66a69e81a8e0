"""Liveness: cheap, open, and names the active storage backends."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from codeapi import __version__
from codeapi.http.deps import Services

router = APIRouter()


@router.get("/health")
async def health(services: Services) -> dict[str, Any]:
    return {"status": "healthy", "version": __version__, "backends": services.backends}
