"""GET /health/toolbox: what a client (or an operator) can count on before sending code."""

from __future__ import annotations

import httpx

from codeapi.languages import LANGUAGES


async def test_the_toolbox_listing_names_every_language_with_its_version_and_the_installed_libraries(
    toolbox: httpx.AsyncClient,
) -> None:
    response = await toolbox.get("/health/toolbox")
    assert response.status_code == 200
    listing = response.json()
    versions = {language["id"]: language["version"] for language in listing["languages"]}
    assert set(versions) == {spec.id for spec in LANGUAGES}
    assert versions["py"].startswith("Python 3.")
    assert versions["js"].startswith("v")
    assert versions["rs"].startswith("rustc ")
    packages = listing["packages"]
    assert {"pandas", "python-docx", "seaborn", "pdfplumber"} <= set(packages["py"])
    assert {"lodash", "exceljs", "sharp"} <= set(packages["js"])
    assert {"serde", "regex", "chrono"} <= set(packages["rs"])
    assert {"dplyr", "ggplot2", "readxl"} <= set(packages["r"])
    assert "github.com/google/uuid" in packages["go"]
    assert {"mbstring", "gd", "intl", "zip"} <= set(packages["php"])
    assert all(listing["tools"].values()), listing["tools"]
    assert all(listing["fonts"].values()), listing["fonts"]


async def test_the_toolbox_listing_needs_the_api_key(toolbox: httpx.AsyncClient) -> None:
    response = await toolbox.get("/health/toolbox", headers={"x-api-key": "wrong"})
    assert response.status_code == 401
