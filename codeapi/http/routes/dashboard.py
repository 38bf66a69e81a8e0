"""/admin-dashboard: the static admin page and its two assets, served by the API itself (no build step).

The page is open (it holds no data); everything it shows comes from the admin API with the master
key the administrator types in. A strict CSP keeps anything but these files from running in it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from codeapi.errors import NotFound

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "admin"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/admin-dashboard")
@router.get("/admin-dashboard/")
async def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD_DIR / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/admin-dashboard/static/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound("Not Found")
    return FileResponse(DASHBOARD_DIR / name, media_type=ASSETS[name], headers=HEADERS)
