"""The admin dashboard in a real headless Chromium against a real server: sign in, create a key, see it
used, revoke it. Each page is saved as a screenshot under the test's temp dir and checked not blank."""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.admin.conftest import MASTER_KEY
from tests.apiserver import Replica

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def server(test_root: Path) -> Iterator[Replica]:
    replica = Replica(
        test_root / f"dashboard-{uuid.uuid4().hex[:6]}", {"MASTER_API_KEY": MASTER_KEY, "REPL_ENABLED": "false"}
    )
    try:
        replica.wait_ready()
        yield replica
    finally:
        replica.stop()


def distinct_pixel_bytes(png: bytes) -> int:
    """How many different byte values the image's pixel data holds: 1 or 2 for a blank page."""
    position, data = 8, b""
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    return len(set(zlib.decompress(data)))


async def screenshot(page: Page, directory: Path, name: str) -> None:
    png = await page.screenshot(path=str(directory / f"{name}.png"), full_page=True)
    assert distinct_pixel_bytes(png) > 16, f"{name} looks blank"


async def uses_of(page: Page, name: str) -> str:
    row = page.locator("#keys-table tbody tr", has_text=name)
    return (await row.locator(".col-uses").text_content()) or ""


async def test_an_administrator_creates_watches_and_revokes_a_key_in_the_browser(
    server: Replica, tmp_path: Path
) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda dialog: dialog.accept())
            await page.goto(f"{server.url}/admin-dashboard")
            await expect(page.locator("#signin")).to_be_visible()
            await screenshot(page, tmp_path, "1-sign-in")

            await page.fill("#master-key", "not-the-master-key-000")
            await page.click("#signin-button")
            await expect(page.locator("#signin-error")).not_to_be_empty()

            await page.fill("#master-key", MASTER_KEY)
            await page.click("#signin-button")
            await expect(page.locator("#overview")).to_be_visible()
            await expect(page.locator("#health .status-healthy").first).to_be_visible()
            await screenshot(page, tmp_path, "2-overview")

            await page.click("button[data-view=keys]")
            await page.fill("#key-name", "browser-tenant")
            await page.fill("#key-per-minute", "60")
            await page.click("#create-button")
            await expect(page.locator("#new-key")).to_be_visible()
            key = (await page.locator("#new-key-value").text_content()) or ""
            assert key.startswith("sk-")
            await expect(page.locator("#keys-table tbody tr", has_text="browser-tenant")).to_contain_text(
                "60 per minute"
            )
            assert await uses_of(page, "browser-tenant") == "0"
            await screenshot(page, tmp_path, "3-keys")

            async with httpx.AsyncClient(base_url=server.url, headers={"x-api-key": key}, timeout=60) as tenant:
                ran = await tenant.post("/exec", json={"lang": "bash", "code": "echo from the tenant"})
                assert ran.status_code == 200 and ran.json()["stdout"] == "from the tenant\n"
                await page.click("#refresh")
                await expect(
                    page.locator("#keys-table tbody tr", has_text="browser-tenant").locator(".col-uses")
                ).to_have_text("1")
                await page.click("button[data-view=overview]")
                await expect(page.locator("#by-key tbody tr", has_text="browser-tenant")).to_contain_text("1")

                await page.click("button[data-view=keys]")
                row = page.locator("#keys-table tbody tr", has_text="browser-tenant")
                await row.locator(".toggle").click()
                await expect(row.locator(".col-enabled")).to_have_text("no")
                disabled = await tenant.post("/exec", json={"lang": "bash", "code": "echo again"})
                assert disabled.status_code == 401 and disabled.json()["error"] == "API key is disabled"
                await row.locator(".toggle").click()
                await expect(row.locator(".col-enabled")).to_have_text("yes")
                await row.locator(".revoke").click()
                await expect(page.locator("#keys-table tbody tr", has_text="browser-tenant")).to_have_count(0)
                refused = await tenant.post("/exec", json={"lang": "bash", "code": "echo again"})
                assert refused.status_code == 401
            await screenshot(page, tmp_path, "4-revoked")
        finally:
            await browser.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "1-sign-in.png",
        "2-overview.png",
        "3-keys.png",
        "4-revoked.png",
    ]
