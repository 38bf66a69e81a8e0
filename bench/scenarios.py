"""What the benchmark sends: hello world per language, Python workloads, uploads and downloads."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.load import Call, CallFailed, Plan, SandboxTotals, Snapshot, describe, measure, measure_interleaved
from bench.stats import Measurement
from codeapi.languages import LANGUAGES
from codeapi.units import KB, MB

Say = Callable[[str], None]

# Floor names (bench.floor) the Python workloads are compared with.
BARE_PYTHON = "py: runtime python3 -c pass"
BARE_PANDAS = "py: pandas workload, bare"
BARE_MATPLOTLIB = "py: matplotlib workload, bare"

PANDAS_CODE = """\
import pandas as pd
df = pd.DataFrame({"k": [i % 10 for i in range(1000)], "v": range(1000)})
print(int(df.groupby("k")["v"].sum().sum()))
"""
PANDAS_STDOUT = "499500\n"
MATPLOTLIB_CODE = """\
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 2, 3, 4], [1, 4, 2, 3])
fig.savefig("/mnt/data/plot.png")
print("saved")
"""


@dataclass
class ExecCheck:
    stdout: str | None = None
    files: int | None = None


@dataclass
class SessionChain:
    """The continued-session scenario: every call sends the session id the previous response named."""

    session_id: str | None = None


METRIC_LINE = re.compile(r'^codeapi_execution_seconds_(sum|count)\{language="([^"]+)"\} (\S+)$', re.MULTILINE)


def server_metrics(client: httpx.AsyncClient) -> Snapshot:
    """Reads the server's own per-language sandbox time (``codeapi_execution_seconds``) from /metrics."""

    async def read() -> SandboxTotals:
        response = await client.get("/metrics")
        response.raise_for_status()
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for kind, lang, value in METRIC_LINE.findall(response.text):
            (sums if kind == "sum" else counts)[lang] = float(value)
        return {lang: (sums.get(lang, 0.0), count) for lang, count in counts.items()}

    return read


async def post_exec(client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/exec", json=payload)
    if response.status_code != 200:
        raise CallFailed(f"HTTP {response.status_code}: {response.text[:200]}")
    body = response.json()  # a run past 3 s streams leading spaces; json ignores them
    if not isinstance(body, dict) or "stdout" not in body:
        raise CallFailed(f"not an exec result: {str(body)[:200]}")
    return body


def exec_call(
    client: httpx.AsyncClient, lang: str, code: str, check: ExecCheck, chain: SessionChain | None = None
) -> Call:
    async def call() -> None:
        payload: dict[str, Any] = {"lang": lang, "code": code}
        if chain is not None and chain.session_id is not None:
            payload["session_id"] = chain.session_id
        body = await post_exec(client, payload)
        if check.stdout is not None and body["stdout"] != check.stdout:
            raise CallFailed(f"stdout {body['stdout']!r} (stderr {str(body.get('stderr'))[:200]!r})")
        if check.files is not None and len(body.get("files") or []) != check.files:
            raise CallFailed(f"expected {check.files} output files, got {body.get('files')!r}")
        if chain is not None:
            if chain.session_id is not None and body["session_id"] != chain.session_id:
                raise CallFailed(f"session not continued: sent {chain.session_id}, got {body['session_id']}")
            chain.session_id = body["session_id"]

    return call


async def measure_languages(
    client: httpx.AsyncClient,
    languages: list[str],
    n: int,
    concurrency: int,
    warmup: int,
    cpu_pid: int,
    say: Say,
    direct: Callable[[str], Call] | None = None,
    direct_n: int = 0,
    snapshot: Snapshot | None = None,
) -> tuple[list[Measurement], dict[str, Measurement]]:
    """Per language: sequential /exec interleaved with the direct (no HTTP) run, then /exec at ``concurrency``."""
    found: list[Measurement] = []
    directs: dict[str, Measurement] = {}
    specs = {spec.id: spec for spec in LANGUAGES}
    for lang in languages:
        code, expected = specs[lang].hello
        call = exec_call(client, lang, code, ExecCheck(stdout=expected))
        labels = {"lang": lang}
        plans = [Plan(f"{lang} hello", "language", call, n, cpu_pid, labels)]
        if direct is not None and direct_n > 0:
            plans.append(Plan(f"direct {lang}", "direct", direct(lang), direct_n, None, labels))
        say(f"exec: {lang} hello world, sequential" + (" (interleaved with direct)" if len(plans) > 1 else ""))
        sequential, *rest = await measure_interleaved(plans, warmup, snapshot)
        found.append(sequential)
        if rest:
            directs[lang] = rest[0]
        if concurrency > 1:
            say(f"exec: {lang} hello world, concurrency {concurrency}")
            found.append(
                await measure(
                    f"{lang} hello",
                    "language",
                    call,
                    n=n,
                    concurrency=concurrency,
                    warmup=0,
                    cpu_pid=cpu_pid,
                    labels=labels,
                    snapshot=snapshot,
                )
            )
    return found, directs


async def upload(client: httpx.AsyncClient, name: str, content: bytes) -> tuple[str, str]:
    response = await client.post("/upload", files={"file": (name, content)})
    if response.status_code != 200:
        raise CallFailed(f"upload: HTTP {response.status_code}: {response.text[:200]}")
    body = response.json()
    return str(body["session_id"]), str(body["files"][0]["fileId"])


async def measure_python(
    client: httpx.AsyncClient,
    n: int,
    concurrency: int,
    warmup: int,
    cpu_pid: int,
    say: Say,
    snapshot: Snapshot | None = None,
) -> list[Measurement]:
    parallel = tuple(sorted({1, concurrency}))
    workloads: list[tuple[str, str, ExecCheck, tuple[int, ...], str]] = [
        ("print(1)", "print(1)", ExecCheck(stdout="1\n"), tuple(sorted({1, concurrency, 8})), BARE_PYTHON),
        ("pandas groupby (1k rows)", PANDAS_CODE, ExecCheck(stdout=PANDAS_STDOUT), parallel, BARE_PANDAS),
        (
            "matplotlib plot -> /mnt/data",
            MATPLOTLIB_CODE,
            ExecCheck(stdout="saved\n", files=1),
            parallel,
            BARE_MATPLOTLIB,
        ),
    ]
    found: list[Measurement] = []
    for name, code, check, levels, bare in workloads:
        for level in levels:
            say(f"python: {name}, concurrency {level}")
            found.append(
                await measure(
                    name,
                    "python",
                    exec_call(client, "py", code, check),
                    n=n,
                    concurrency=level,
                    warmup=warmup,
                    cpu_pid=cpu_pid,
                    labels={"bare": bare},
                    snapshot=snapshot,
                )
            )
    say("python: continued session")
    # The warm-up call creates the session; every timed call continues it.
    found.append(
        await measure(
            "continued session, print(1)",
            "python",
            exec_call(client, "py", "print(1)", ExecCheck(stdout="1\n"), SessionChain()),
            n=n,
            warmup=max(warmup, 1),
            cpu_pid=cpu_pid,
            labels={"bare": BARE_PYTHON},
            snapshot=snapshot,
        )
    )
    say("python: continued session holding a 1 MiB file")
    name = "continued session + 1 MiB file staged, print(1)"
    try:
        session_id, _ = await upload(client, "input.bin", os.urandom(MB))
    except (CallFailed, httpx.HTTPError, KeyError, ValueError) as error:
        found.append(Measurement(name, "python", 1, [], [f"setup upload failed: {describe(error)}"], 0.0))
        return found
    found.append(
        await measure(
            name,
            "python",
            exec_call(client, "py", "print(1)", ExecCheck(stdout="1\n"), SessionChain(session_id)),
            n=n,
            warmup=warmup,
            cpu_pid=cpu_pid,
            labels={"bare": BARE_PYTHON},
            snapshot=snapshot,
        )
    )
    return found


def size_label(size: int) -> str:
    return f"{size // MB} MiB" if size >= MB else f"{size // KB} KiB"


async def measure_files(
    client: httpx.AsyncClient, sizes: list[int], n: int, warmup: int, cpu_pid: int, say: Say
) -> list[Measurement]:
    found: list[Measurement] = []
    for size in sizes:
        content = os.urandom(size)
        label = size_label(size)
        stored: list[tuple[str, str]] = []

        async def upload_call(content: bytes = content, stored: list[tuple[str, str]] = stored) -> None:
            stored.append(await upload(client, "bench.bin", content))

        say(f"files: upload {label}")
        found.append(
            await measure(
                f"upload {label}",
                "files",
                upload_call,
                n=n,
                warmup=warmup,
                cpu_pid=cpu_pid,
                labels={"op": "upload", "bytes": size},
            )
        )
        if not stored:
            continue
        session_id, file_id = stored[-1]

        async def download_call(size: int = size, session_id: str = session_id, file_id: str = file_id) -> None:
            response = await client.get(f"/download/{session_id}/{file_id}")
            if response.status_code != 200:
                raise CallFailed(f"download: HTTP {response.status_code}: {response.text[:200]}")
            if len(response.content) != size:
                raise CallFailed(f"download: {len(response.content)} bytes, expected {size}")

        say(f"files: download {label}")
        found.append(
            await measure(
                f"download {label}",
                "files",
                download_call,
                n=n,
                warmup=warmup,
                cpu_pid=cpu_pid,
                labels={"op": "download", "bytes": size},
            )
        )
    return found
