"""The Python fast path's targets, through HTTP, with their floor measured in the same run.

* floor: a raw round trip to a warm REPL (``print(1)`` in one sandbox called from this process: no
  HTTP, sessions or storage), without and with the state save a chat turn does, and with the
  restore a turn needs when its session's interpreter is not at hand (another replica, a restart);
* chat turns: every client continues its own session, so state is carried; sequential and 8 at a
  time, each of the 8 on its own session;
* new sessions: every request starts a fresh, isolated session; sequential, then 8 at a time for
  long enough that the pool must refill faster than it drains;
* memory: PSS of each kept sandbox's processes (the jail's init and the worker) after the chat turns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from bench.floor import Sandbox
from bench.load import CallFailed, kept_sandbox_pss, measure
from bench.scenarios import BARE_PYTHON, ExecCheck, SessionChain, exec_call
from bench.stats import Measurement
from codeapi.repl import protocol
from codeapi.repl.sandbox import start_sandbox
from codeapi.storage import open_stores
from codeapi.wiring.components import build_warm_python
from codeapi.wiring.limits import derive_limits

Say = Callable[[str], None]
CONCURRENT_SESSIONS = 8
ZYGOTE_START_S = 120.0
CHAT_TURNS = {"p50_ms": 5.0, "p99_ms": 20.0}
CHAT_TURNS_CONCURRENT = {"min_rps": 200.0}
NEW_SESSIONS = {"p50_ms": 50.0}
NEW_SESSIONS_CONCURRENT = {"min_rps": 25.0}
PSS_PER_SANDBOX_MIB = 60.0
# A chat's typical namespace: a DataFrame of 10k rows, a function, a few scalars.
RESTORED_STATE_CODE = """\
import pandas as pd
df = pd.DataFrame({"k": [i % 10 for i in range(10_000)], "v": range(10_000)})
def total(frame):
    return int(frame["v"].sum())
rows, label = len(df), "sales"
"""


async def measure_repl_floor(sandbox: Sandbox, n: int, warmup: int, say: Say) -> list[Measurement]:
    """``print(1)`` round trips to one warm REPL sandbox started in this process, as the API would."""
    say("targets floor: raw round trip to a warm REPL")
    settings = sandbox.settings
    metadata, blobs = await open_stores(settings.storage, settings.redis, settings.s3)
    limits = derive_limits(settings)
    warm = build_warm_python(
        settings, limits, sandbox.runner(), sandbox.workspaces, sandbox.programs(), metadata, blobs
    )
    found: list[Measurement] = []
    try:
        if warm is None:
            return found
        launcher = warm.pool.launcher
        await launcher.zygote.start(ZYGOTE_START_S)
        repl = await start_sandbox(launcher)
        try:
            report = (await repl.call(RESTORED_STATE_CODE, (), 30, protocol.Save.ALWAYS, None)).report
            state = report.state if report is not None else None
            size = f"{len(state or b'') // 1024} KiB"
            variants = (
                ("warm REPL round trip, print(1)", protocol.Save.NEVER, None),
                (f"warm REPL round trip + save of a {size} state, print(1)", protocol.Save.ALWAYS, None),
                (f"warm REPL round trip + restore of a {size} state, print(1)", protocol.Save.NEVER, state),
            )
            for name, save, restore in variants:

                async def call(save: protocol.Save = save, restore: bytes | None = restore) -> None:
                    ran = await repl.call("print(1)", (), 10, save, restore)
                    if ran.result.stdout != b"1\n":
                        raise CallFailed(f"stdout {ran.result.stdout!r}, stderr {ran.result.stderr[:200]!r}")

                labels = {"reference": "repl"} if save is protocol.Save.NEVER and restore is None else {}
                found.append(await measure(name, "floor", call, n=n, warmup=warmup, labels=labels))
        finally:
            await repl.destroy()
            await launcher.zygote.stop()
    finally:
        await metadata.close()
        await blobs.close()
    return found


async def measure_targets(
    client: httpx.AsyncClient, n: int, sustained_n: int, warmup: int, cpu_pid: int, say: Say
) -> list[Measurement]:
    found: list[Measurement] = []
    check = ExecCheck(stdout="1\n")

    async def run(name: str, calls: Any, count: int, concurrency: int, targets: dict[str, float]) -> Measurement:
        say(f"targets: {name}, concurrency {concurrency}, {count} requests")
        item = await measure(
            name, "targets", calls, n=count, concurrency=concurrency, warmup=warmup, cpu_pid=cpu_pid,
            labels={"bare": BARE_PYTHON, "targets": targets},
        )  # fmt: skip
        found.append(item)
        return item

    # As many turns as the sustained scenarios: a p99 of 20 samples is their maximum, and 20 turns
    # last 0.1 s, where one scheduling hiccup moves the p50.
    await run("chat turns (continued session), print(1)", exec_call(client, "py", "print(1)", check, SessionChain()),
              sustained_n, 1, CHAT_TURNS)  # fmt: skip
    chains = [exec_call(client, "py", "print(1)", check, SessionChain()) for _ in range(CONCURRENT_SESSIONS)]
    turns = await run("chat turns, 8 sessions at once, print(1)", chains, sustained_n, CONCURRENT_SESSIONS,
                      CHAT_TURNS_CONCURRENT)  # fmt: skip
    turns.labels["pss_per_kept_sandbox"] = kept_sandbox_pss(cpu_pid)
    await run("new session each request, print(1)", exec_call(client, "py", "print(1)", check), n, 1, NEW_SESSIONS)
    await run("new sessions, 8 at once, sustained, print(1)", exec_call(client, "py", "print(1)", check), sustained_n,
              CONCURRENT_SESSIONS, NEW_SESSIONS_CONCURRENT)  # fmt: skip
    return found


def verdict(item: Measurement) -> str:
    """Which of the measurement's targets are met, e.g. "p50 ≤ 5 ms: yes; p99 ≤ 20 ms: no"."""
    targets: dict[str, float] = item.labels.get("targets") or {}
    if item.errors:
        return f"no ({len(item.errors)} errors)"
    parts = []
    for key, bound in targets.items():
        if key == "min_rps":
            parts.append(f"≥ {bound:g}/s: {'yes' if item.throughput >= bound else 'no'}")
        else:
            value = getattr(item.summary, key.removesuffix("_ms"))
            parts.append(f"{key.removesuffix('_ms')} ≤ {bound:g} ms: {'yes' if value <= bound else 'no'}")
    pss = item.labels.get("pss_per_kept_sandbox") or {}
    if pss.get("sandboxes"):
        mean = pss["pss_mib_per_sandbox"]
        parts.append(
            f"PSS {mean:.1f} MiB/sandbox ≤ {PSS_PER_SANDBOX_MIB:g}: {'yes' if mean <= PSS_PER_SANDBOX_MIB else 'no'}"
        )
    return "; ".join(parts)
