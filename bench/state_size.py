"""``python -m bench.state_size``: a chat turn's time against the size of the session's kept state.

Each call of a Python session runs in a new process that got the previous call's variables back
(codeapi/repl/sandbox.py). Here a session first builds a DataFrame of 1, 50 or 200 MB; then its
``print(1)`` turns are timed through HTTP, twice: with a pause between turns (a chat: the next
worker restored the state meanwhile) and back to back (the turn waits for that restore). Beside
them, the reference design's cost for the same state: a fresh ``python3`` (the sandbox's own
interpreter, outside any sandbox) that imports pandas, unpickles the same DataFrame and prints 1.
Must run as root from the repository root; prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.server import running_server
from bench.stats import Summary

MIB = 1024 * 1024
SIZES_MIB = (1, 50, 200)
COLUMNS = 8  # float64 columns: 64 bytes a row
THINK_S = 1.0  # a chat's pause between turns is seconds (the model writes the next call)
SERVER_SETTINGS = {
    # Room for a 200 MB frame: its pickle and compressed copy live beside it while it is saved.
    "MAX_MEMORY_MB": "2048",
    "MAX_FILE_SIZE_MB": "512",
    "MAX_EXECUTION_TIME": "120",
    "REPL_WARMUP_TIMEOUT_SECONDS": "60",
}
BUILD = "import numpy as np, pandas as pd\ndf = pd.DataFrame(np.random.default_rng(1).random(({rows}, {columns})))"
FRESH_PYTHON = "import pickle, sys, pandas\npickle.load(open(sys.argv[1], 'rb'))\nprint(1)"
# Run by the sandbox's interpreter (the API's environment has no pandas): the same frame, pickled.
WRITE_STATE = (
    "import pickle, sys, numpy as np, pandas as pd\n"
    "frame = pd.DataFrame(np.random.default_rng(1).random((int(sys.argv[2]), int(sys.argv[3]))))\n"
    "pickle.dump(frame, open(sys.argv[1], 'wb'), protocol=5)"
)


def rows_for(size_mib: int) -> int:
    return size_mib * MIB // (COLUMNS * 8)


async def turns(client: httpx.AsyncClient, session_id: str, n: int, think_s: float) -> Summary:
    samples = []
    for _ in range(n):
        await asyncio.sleep(think_s)
        started = time.perf_counter()
        response = await client.post("/exec", json={"lang": "py", "code": "print(1)", "session_id": session_id})
        body = response.json()
        if response.status_code != 200 or body["stdout"] != "1\n":
            raise RuntimeError(f"turn failed: {response.status_code} {body}")
        samples.append(time.perf_counter() - started)
    return Summary.of(samples)


def fresh_python(python: Path, size_mib: int, n: int) -> Summary:
    """The reference design: a new interpreter per call, unpickling the same state first."""
    with tempfile.NamedTemporaryFile(suffix=".pickle") as state:
        subprocess.run([str(python), "-c", WRITE_STATE, state.name, str(rows_for(size_mib)), str(COLUMNS)], check=True)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            subprocess.run([str(python), "-c", FRESH_PYTHON, state.name], check=True, stdout=subprocess.DEVNULL)
            samples.append(time.perf_counter() - started)
    return Summary.of(samples)


async def measure(base_url: str, api_key: str, python: Path, n: int) -> list[str]:
    rows = [
        "| state (DataFrame) | turn p50 ms, chat pace | p90 | turn p50 ms, back to back | p90 | "
        "fresh python3 + unpickle p50 ms | p90 |",
        "|---|---|---|---|---|---|---|",
    ]
    async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": api_key}, timeout=300) as client:
        for size in SIZES_MIB:
            code = BUILD.format(rows=rows_for(size), columns=COLUMNS)
            built = await client.post("/exec", json={"lang": "py", "code": code})
            body = built.json()
            if built.status_code != 200 or body["stderr"]:
                raise RuntimeError(f"building the {size} MB frame failed: {body}")
            session_id = body["session_id"]
            paced = await turns(client, session_id, n, THINK_S)
            back_to_back = await turns(client, session_id, n, 0)
            fresh = await asyncio.to_thread(fresh_python, python, size, n)
            rows.append(
                f"| {size} MB | {paced.p50:.1f} | {paced.p90:.1f} | {back_to_back.p50:.1f} | {back_to_back.p90:.1f} "
                f"| {fresh.p50:.0f} | {fresh.p90:.0f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="embedded", choices=("embedded", "redis-s3"))
    parser.add_argument("-n", type=int, default=10, help="turns per size and pace (default 10)")
    parser.add_argument("--python", type=Path, default=Path("/opt/codeapi/python/bin/python3"))
    args = parser.parse_args()
    with running_server(args.backend, extra=SERVER_SETTINGS) as server:
        rows = asyncio.run(measure(server.base_url, server.api_key, args.python, args.n))
    sys.stdout.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
