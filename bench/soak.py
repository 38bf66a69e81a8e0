"""The soak (issue 22; not part of CI): docker-compose.yml with N API replicas behind the balancer, the
container lane's mixed load (tests/lanes/container/load.py: uploads, downloads, runs reading an upload,
new and continued Python sessions, bash, JavaScript) at c=8 for ``--minutes``, then every acknowledged
upload and kept variable read back, the requests each replica served (the balancer's counters), and what
the replicas leave on the host after `docker compose down` (processes, cgroups, mounts).

    .venv/bin/python -m bench.soak --minutes 10 --replicas 3 --concurrency 8

It deploys its own stack as the container lane does (an operator's copy of this checkout, `.env` from
`.env.example`, `docker compose build` and `up -d`, then `--scale api=N`), with the lane's helpers, and
writes its result to bench/results/soak-<time>.json. Exit status 0 only with no error and no leftover.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.backends import free_port
from tests.lanes.container.load import ACCEPTABLE, OK, Ledger, MixedLoad, Outcome, Target, verify
from tests.lanes.container.stack import (
    ComposeStack,
    ThisHost,
    container_leftovers,
    ensure_base_image,
    ensure_dockerd,
    remove_stale_stacks,
    require_tools,
    sh,
)

RESULTS = Path(__file__).resolve().parent / "results"
VERIFY_DEADLINE_S = 300.0


def say(message: str) -> None:
    print(f"[soak {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)  # noqa: T201


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    return parser.parse_args(argv)


def replica_names(stack: ComposeStack) -> dict[str, str]:
    """address:8000 -> container name, for the balancer's rows."""
    names = {}
    for container in stack.api_containers():
        fields = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}} {{.Name}}"
        address, name = sh(["docker", "inspect", "--format", fields, container]).stdout.split()
        names[f"{address}:8000"] = name.lstrip("/")
    return names


def per_replica(stack: ComposeStack) -> dict[str, dict[str, int]]:
    """The balancer's counters per replica: requests sent (stot; one connection per request), answers
    by class."""
    names = replica_names(stack)
    counters = {}
    for row in stack.balancer_stats():
        if row["addr"] in names:
            keys = ("stot", "hrsp_2xx", "hrsp_4xx", "hrsp_5xx", "eresp", "econ")
            counters[names[row["addr"]]] = {key: int(row[key] or 0) for key in keys}
    return counters


def latencies(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    by_op: dict[str, list[float]] = {}
    for outcome in outcomes:
        if outcome.kind == OK:
            by_op.setdefault(outcome.op, []).append(outcome.ended - outcome.started)
    summary = {}
    for op, times in sorted(by_op.items()):
        times.sort()
        summary[op] = {
            "calls": len(times),
            "p50_ms": round(1000 * statistics.median(times), 1),
            "p95_ms": round(1000 * times[int(0.95 * (len(times) - 1))], 1),
        }
    return summary


def soak(args: argparse.Namespace, stack: ComposeStack) -> dict[str, Any]:
    started = time.monotonic()
    stack.build()
    stack.up()
    say(f"one replica serving after {time.monotonic() - started:.0f} s; scaling to {args.replicas}")
    scale_s = stack.scale(args.replicas)
    say(f"{args.replicas} replicas ready in {scale_s:.0f} s")
    containers = {name: sh(["docker", "inspect", "--format", "{{.Id}}", name]).stdout.strip()
                  for name in replica_names(stack).values()}  # fmt: skip
    roots = {cid: sh(["docker", "inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", cid]).stdout.strip()
             for cid in containers.values()}  # fmt: skip
    before = per_replica(stack)
    ledger = Ledger()
    target = Target(stack.url, stack.api_key, stack.verify)
    duration_s = args.minutes * 60
    say(f"load at c={args.concurrency} for {duration_s:.0f} s")
    load_began = time.monotonic()
    with MixedLoad(target, ledger, args.concurrency, seed="soak"):
        while (elapsed := time.monotonic() - load_began) < duration_s:
            time.sleep(min(30.0, duration_s - elapsed))
            counts = ledger.counts()
            say(f"{elapsed + 0.0:.0f} s: {sum(counts.values())} calls, {dict(counts)}")
    load_s = time.monotonic() - load_began
    after = per_replica(stack)
    served = {name: {key: after[name][key] - before.get(name, {}).get(key, 0) for key in after[name]} for name in after}
    say(f"load done in {load_s:.0f} s; per replica: {served}")
    verified = verify(target, ledger, VERIFY_DEADLINE_S, args.concurrency)
    say(f"read back {verified.uploads} uploads, {verified.sessions} sessions in {verified.seconds:.0f} s")
    stack.down()
    leftovers = {name: container_leftovers(cid, roots[cid]) for name, cid in containers.items()}
    project = stack.leftovers()
    errors = [outcome for outcome in ledger.outcomes if outcome.kind not in ACCEPTABLE]
    refused = [outcome for outcome in ledger.outcomes if outcome.kind != OK]
    return {
        "replicas": args.replicas,
        "concurrency": args.concurrency,
        "load_s": round(load_s, 1),
        "calls": len(ledger.outcomes),
        "calls_per_s": round(len(ledger.outcomes) / load_s, 2),
        "by_kind": dict(ledger.counts()),
        "by_op": dict(Counter(outcome.op for outcome in ledger.outcomes)),
        "errors": [f"{o.op} {o.kind}: {o.detail}" for o in errors[:50]],
        "refused": [f"{o.op} {o.kind}: {o.detail}" for o in refused[:50]],
        "latency": latencies(ledger.outcomes),
        "per_replica": {
            name: {**counts, "per_s": round(counts["stot"] / load_s, 2)} for name, counts in sorted(served.items())
        },
        "verified": {
            "uploads": verified.uploads,
            "sessions": verified.sessions,
            "seconds": round(verified.seconds, 1),
            "failures": verified.failures[:50],
            "retried": dict(verified.retried),
        },
        "leftovers": {"project": project, "replicas": leftovers},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_tools()
    ensure_dockerd()
    ensure_base_image()
    with tempfile.TemporaryDirectory(prefix="codeapi-soak-") as workdir:
        host = ThisHost(Path(workdir))
        remove_stale_stacks(host)
        port = free_port()
        stack = ComposeStack(host, port, url=f"http://127.0.0.1:{port}", name="soak")
        try:
            result = soak(args, stack)
        finally:
            stack.down()
    clean = (
        not result["errors"]
        and not result["verified"]["failures"]
        and not any(result["leftovers"]["project"].values())
        and not any(any(found.values()) for found in result["leftovers"]["replicas"].values())
    )
    result["clean"] = clean
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"soak-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    say(f"{'clean' if clean else 'NOT CLEAN'}: {path}")
    print(json.dumps(result, indent=2))  # noqa: T201
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
