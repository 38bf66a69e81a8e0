"""``python -m bench.run``: start a real codeapi server, measure the floor and the API, print a report.

Progress goes to stderr, the markdown report to stdout (and ``--md FILE``), raw numbers to ``--out FILE``.
Must run as root from the repository root (the server creates nsjail sandboxes).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import structlog

from bench.floor import Sandbox, direct_calls, measure_floor
from bench.report import Results, render
from bench.scenarios import measure_files, measure_languages, measure_python, server_metrics
from bench.server import BACKENDS, LOOPS, RunningServer, ServerFailed, running_server
from bench.targets import measure_repl_floor, measure_targets
from codeapi.config import ENV_NAMES, Settings
from codeapi.languages import LANGUAGES
from codeapi.units import KB, MB

SECTIONS = ("floor", "direct", "languages", "python", "targets", "files")
FILE_SIZES = (KB, MB, 20 * MB)
# (full run, --quick)
DEFAULT_N = (20, 5)
DEFAULT_FLOOR_N = (20, 10)
DEFAULT_DIRECT_N = (10, 3)
DEFAULT_FILE_N = (10, 3)
DEFAULT_SUSTAINED_N = (400, 40)
EXIT_ERRORS = 1
EXIT_BACKEND_MISMATCH = 3


def say(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def quiet_codeapi_logs() -> None:
    """The bench drives codeapi's sandbox code in-process; keep its logs off stdout (the report)."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark a real codeapi server (started here as a subprocess) against the floor: "
        "bare spawns, nsjail, an empty HTTP round trip. Run as root from the repository root.",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="embedded", help="storage backends (default: embedded)")
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="server event loop: auto = `codeapi serve` as shipped (uvloop when installed); asyncio/uvloop "
        "start the same app through uvicorn.run with that loop forced (an experiment)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra codeapi setting for the server, e.g. REPL_ENABLED=false (repeatable)",
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds to wait after /health/ready answers (default 5)"
    )
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: fewer samples everywhere")
    parser.add_argument("-n", "--requests", type=int, help="timed /exec requests per scenario (20; quick 5)")
    parser.add_argument("--concurrency", type=int, default=4, help="the parallel level per language (default 4)")
    parser.add_argument("--floor-n", type=int, help="samples per floor measurement (20; quick 10)")
    parser.add_argument(
        "--direct-n", type=int, help="runs per language without HTTP, interleaved with /exec (10; quick 3)"
    )
    parser.add_argument("--file-n", type=int, help="uploads and downloads per size (10; quick 3)")
    parser.add_argument(
        "--sustained-n",
        type=int,
        help="requests of the chat-turn and 8-at-once Python target scenarios (400; quick 40)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before each scenario (default 1)")
    parser.add_argument(
        "--languages",
        default=",".join(spec.id for spec in LANGUAGES),
        help="comma-separated language ids (default: all 13)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all); "
        "direct = languages without HTTP, interleaved with the sequential /exec runs",
    )
    parser.add_argument("--out", type=Path, help="write every raw number as JSON here")
    parser.add_argument("--md", type=Path, help="also write the markdown report here")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="print the report of an earlier --out file; run nothing"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, data)")
    args = parser.parse_args(argv)
    pick = 1 if args.quick else 0
    args.requests = args.requests or DEFAULT_N[pick]
    args.floor_n = args.floor_n or DEFAULT_FLOOR_N[pick]
    args.direct_n = args.direct_n or DEFAULT_DIRECT_N[pick]
    args.file_n = args.file_n or DEFAULT_FILE_N[pick]
    args.sustained_n = args.sustained_n or DEFAULT_SUSTAINED_N[pick]
    known = {spec.id for spec in LANGUAGES}
    args.languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    args.only = {section.strip() for section in args.only.split(",") if section.strip()}
    if unknown := set(args.languages) - known:
        parser.error(f"unknown languages: {', '.join(sorted(unknown))}")
    if unknown := args.only - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    extra: dict[str, str] = {}
    for item in args.server_env:
        name, equals, value = item.partition("=")
        if not equals or name.upper() not in ENV_NAMES:
            parser.error(f"--server-env {item!r}: expected NAME=VALUE with a codeapi setting name")
        extra[name.upper()] = value
    args.server_env = extra
    return args


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


async def run_sections(args: argparse.Namespace, server: RunningServer, results: Results) -> None:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"x-api-key": server.api_key}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=180, limits=limits) as client:
        sandbox = Sandbox.for_server(server.settings, server.root / "bench-sandboxes")
        snapshot = server_metrics(client)
        if args.settle > 0:
            say(f"letting the server settle for {args.settle:g} s (the Python zygote and warm pool start)")
            await asyncio.sleep(args.settle)
        if "floor" in args.only:
            results.floor = await measure_floor(sandbox, client, args.floor_n, args.warmup, say)
        if "languages" in args.only:
            results.languages, results.direct = await measure_languages(
                client,
                args.languages,
                args.requests,
                args.concurrency,
                args.warmup,
                server.pid,
                say,
                direct=direct_calls(sandbox) if "direct" in args.only else None,
                direct_n=args.direct_n,
                snapshot=snapshot,
            )
        if "python" in args.only and "py" in args.languages:
            results.python = await measure_python(
                client, args.requests, args.concurrency, args.warmup, server.pid, say, snapshot
            )
        if "targets" in args.only and "py" in args.languages:
            results.floor += await measure_repl_floor(sandbox, args.floor_n, args.warmup, say)
            results.targets = await measure_targets(
                client, args.requests, args.sustained_n, args.warmup, server.pid, say
            )
        if "files" in args.only:
            results.files = await measure_files(client, list(FILE_SIZES), args.file_n, args.warmup, server.pid, say)


SECRET_SETTINGS = ("API_KEY", "S3_SECRET_KEY", "S3_ACCESS_KEY")


def shown_settings(settings: dict[str, str]) -> dict[str, str]:
    return {key: "***" if key in SECRET_SETTINGS else value for key, value in sorted(settings.items())}


def python_fast_path(settings: dict[str, str]) -> str:
    """How the server runs Python: the warm REPL pool (and its size) or one-shot like every language."""
    loaded = Settings.load(settings, env_file=None, environ=False)
    if not loaded.repl.enabled:
        return "off (REPL_ENABLED=false: one-shot runs)"
    pool = f"{loaded.pool.py} warm" if loaded.pool.enabled else "no warm pool"
    return f"warm REPL ({pool}, kept per session)"


def json_safe(value: Any) -> Any:
    """NaN is not JSON; it becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        markdown = render(Results.from_json(json.loads(args.render.read_text())))
        sys.stdout.write(markdown)
        if args.md:
            args.md.write_text(markdown)
        return 0
    quiet_codeapi_logs()
    command = "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    try:
        with running_server(args.backend, keep=args.keep, loop=args.loop, extra=args.server_env) as server:
            say(f"server up at {server.base_url} in {server.startup_s:.2f} s, /health backends {server.backends}")
            for note in server.notes:
                say(f"WARNING: {note}")
            if args.keep:
                say(f"keeping {server.root} (server log: {server.log_file})")
            meta = {
                "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "commit": git_commit(),
                "command": command,
                "backend": args.backend,
                "server_loop": args.loop,
                "server_settings": shown_settings(server.settings),
                "python_fast_path": python_fast_path(server.settings),
                "health_backends": server.backends,
                "backend_matches": server.backend_matches,
                "startup_s": server.startup_s,
                "samples": {
                    "exec": args.requests,
                    "concurrency": args.concurrency,
                    "floor": args.floor_n,
                    "direct": args.direct_n,
                    "files": args.file_n,
                    "sustained": args.sustained_n,
                    "warmup": args.warmup,
                },
                "languages": args.languages,
                "sections": sorted(args.only),
                **machine(),
            }
            results = Results(meta=meta, notes=list(server.notes))
            asyncio.run(run_sections(args, server, results))
    except ServerFailed as error:
        say(f"server failed: {error}")
        return 2
    results.meta["duration_s"] = time.perf_counter() - started
    results.meta["loadavg_at_end"] = os.getloadavg()
    markdown = render(results)
    sys.stdout.write(markdown)
    if args.md:
        args.md.write_text(markdown)
    if args.out:
        args.out.write_text(json.dumps(json_safe(results.to_json()), indent=1) + "\n")
        say(f"raw numbers in {args.out}")
    errors = sum(len(item.errors) for item in results.all())
    say(f"done in {results.meta['duration_s']:.0f} s, {errors} errors")
    if not server.backend_matches:
        return EXIT_BACKEND_MISMATCH
    return EXIT_ERRORS if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
