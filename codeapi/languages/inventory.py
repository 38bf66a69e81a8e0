"""What sandboxed programs find installed: each language's version and its libraries, tools and fonts.

Read from the installed files (venv metadata, lock files, R's DESCRIPTIONs, ...) rather than from
the lists in scripts/toolbox/, so it shows what this host has, not what it was meant to have.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from codeapi.languages.spec import LanguageSpec
from codeapi.languages.table import LANGUAGES

VERSION_TIMEOUT_S = 10
R_LIBRARY = Path("/usr/lib/R/site-library")
GO_SOURCES = Path("/usr/share/gocode/src")
PHP_CONF_DIRS = sorted(Path("/etc/php").glob("*/cli/conf.d"))
# Commands a program may call, by the Debian package in scripts/toolbox/apt.txt that brings them.
TOOLS = ("pdftotext", "tesseract", "pandoc", "ffmpeg", "convert", "gs", "file", "zip", "unzip", "jq", "sqlite3", "bc")
FONT_FAMILIES = ("DejaVu Sans", "Noto Sans CJK JP")
VERSION_NUMBER = re.compile(r"\d+(?:\.\d+)+")


@cache
def toolbox_inventory(runtime_dir: Path) -> dict[str, Any]:
    """Computed once per process: it runs each runtime's version command (about a second in all)."""
    return {
        "languages": [
            {"id": spec.id, "name": spec.name, "version": runtime_version(spec, runtime_dir)} for spec in LANGUAGES
        ],
        "packages": {
            "py": python_packages(runtime_dir / "python"),
            "js": node_modules(runtime_dir / "node-modules"),
            "rs": rust_crates(runtime_dir / "rust"),
            "r": r_packages(R_LIBRARY),
            "go": go_import_paths(GO_SOURCES),
            "php": php_extensions(PHP_CONF_DIRS),
        },
        "tools": {tool: shutil.which(tool, path="/usr/bin") is not None for tool in TOOLS},
        "fonts": {family: font_installed(family) for family in FONT_FAMILIES},
    }


def host_path(spec: LanguageSpec, sandbox_path: str, runtime_dir: Path) -> str:
    """Where a path the sandbox sees under one of the language's mounts lives on the host."""
    for mount in spec.mounts:
        if sandbox_path.startswith(mount.dst + "/"):
            return str(runtime_dir / mount.relative_src) + sandbox_path.removeprefix(mount.dst)
    return sandbox_path


def runtime_version(spec: LanguageSpec, runtime_dir: Path) -> str | None:
    if not spec.version_argv:
        return None
    argv = [host_path(spec, spec.version_argv[0], runtime_dir), *spec.version_argv[1:]]
    try:
        ran = subprocess.run(argv, capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (ran.stdout or ran.stderr).strip().splitlines()  # java and older tools print it on stderr
    return lines[0] if ran.returncode == 0 and lines else None


def version_number(spec: LanguageSpec, runtime_dir: Path) -> str | None:
    """The runtime's version as a bare number ("3.11.2"), the form the official server reports."""
    line = runtime_version(spec, runtime_dir)
    found = VERSION_NUMBER.search(line) if line else None
    return found.group() if found else None


class RuntimeVersions:
    """Each language's version number, found once per process by running its version command."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.known: dict[str, str | None] = {}

    async def of(self, spec: LanguageSpec) -> str | None:
        if spec.id not in self.known:
            self.known[spec.id] = await asyncio.to_thread(version_number, spec, self.runtime_dir)
        return self.known[spec.id]


def python_packages(venv: Path) -> dict[str, str]:
    paths = [str(path) for path in venv.glob("lib/python3*/site-packages")]
    found = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions(path=paths)}
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def node_modules(prefix: Path) -> dict[str, str]:
    lock = prefix / "package-lock.json"
    if not lock.is_file():
        return {}
    packages = json.loads(lock.read_text())["packages"]
    direct = packages[""].get("dependencies", {})
    return {name: packages[f"node_modules/{name}"]["version"] for name in sorted(direct)}


def rust_crates(library: Path) -> dict[str, str]:
    externs, lock = library / "externs", library / "Cargo.lock"
    if not externs.is_file() or not lock.is_file():
        return {}
    listed = {line.removeprefix("--extern=").strip() for line in externs.read_text().splitlines()}
    packages = tomllib.loads(lock.read_text()).get("package", [])
    return {p["name"]: p["version"] for p in sorted(packages, key=lambda p: p["name"]) if p["name"] in listed}


def r_packages(library: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for description in sorted(library.glob("*/DESCRIPTION")):
        fields = dict(
            line.split(": ", 1) for line in description.read_text(errors="replace").splitlines() if ": " in line
        )
        if "Package" in fields and "Version" in fields:
            found[fields["Package"]] = fields["Version"]
    return found


def go_import_paths(root: Path) -> list[str]:
    """host/owner/repo (or host/repo) directories that hold Go files somewhere below them."""
    found = set()
    for source in root.glob("*/*/**/*.go"):
        parts = source.relative_to(root).parts
        depth = 3 if parts[0] in ("github.com", "golang.org", "go.googlesource.com") else 2
        if len(parts) > depth:
            found.add("/".join(parts[:depth]))
    return sorted(found)


def php_extensions(conf_dirs: list[Path]) -> list[str]:
    """Enabled extensions: conf.d holds one NN-name.ini per extension."""
    return sorted({ini.stem.split("-", 1)[-1] for conf_dir in conf_dirs for ini in conf_dir.glob("*.ini")})


def font_installed(family: str) -> bool:
    try:
        ran = subprocess.run(
            ["fc-list", family], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(ran.stdout.strip())
