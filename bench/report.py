"""Markdown tables from the measurements, with ratios against the floor measured in the same run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.stats import Measurement
from bench.targets import verdict
from codeapi.languages import LANGUAGES
from codeapi.units import MB

COMPILED = frozenset(spec.id for spec in LANGUAGES if spec.compile_argv is not None)


@dataclass
class Results:
    meta: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    floor: list[Measurement] = field(default_factory=list)
    direct: dict[str, Measurement] = field(default_factory=dict)
    languages: list[Measurement] = field(default_factory=list)
    python: list[Measurement] = field(default_factory=list)
    targets: list[Measurement] = field(default_factory=list)
    files: list[Measurement] = field(default_factory=list)

    def reference(self, kind: str) -> float:
        """p50 (ms) of the floor marked ``kind`` ("nsjail" or "http"), NaN when not measured."""
        for item in self.floor:
            if item.labels.get("reference") == kind:
                return item.summary.p50
        return math.nan

    def floor_p50(self, name: str) -> float:
        for item in self.floor:
            if item.name == name:
                return item.summary.p50
        return math.nan

    def all(self) -> list[Measurement]:
        return [*self.floor, *self.direct.values(), *self.languages, *self.python, *self.targets, *self.files]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Results:
        """Back from ``--out`` JSON, to render the report again."""
        load = Measurement.from_json
        return cls(
            meta=body["meta"],
            notes=body.get("notes", []),
            floor=[load(item) for item in body.get("floor", [])],
            direct={lang: load(item) for lang, item in body.get("direct", {}).items()},
            languages=[load(item) for item in body.get("languages", [])],
            python=[load(item) for item in body.get("python", [])],
            targets=[load(item) for item in body.get("targets", [])],
            files=[load(item) for item in body.get("files", [])],
        )

    def to_json(self) -> dict[str, Any]:
        nsjail, http = self.reference("nsjail"), self.reference("http")
        return {
            "meta": self.meta,
            "notes": self.notes,
            "reference_p50_ms": {"nsjail_true": nsjail, "http_health": http},
            "floor": [item.to_json() for item in self.floor],
            "direct": {lang: item.to_json() for lang, item in self.direct.items()},
            "languages": [self.with_ratios(item) for item in self.languages],
            "python": [self.with_ratios(item) for item in self.python],
            "targets": [self.with_ratios(item) for item in self.targets],
            "files": [item.to_json() for item in self.files],
        }

    def with_ratios(self, item: Measurement) -> dict[str, Any]:
        p50 = item.summary.p50
        body = item.to_json()
        body["ratios"] = {
            "p50_over_nsjail_true_p50": ratio(p50, self.reference("nsjail")),
            "p50_over_http_health_p50": ratio(p50, self.reference("http")),
        }
        if "bare" in item.labels:
            body["ratios"]["p50_over_bare_p50"] = ratio(p50, self.floor_p50(str(item.labels["bare"])))
        direct = self.direct.get(str(item.labels.get("lang")))
        if direct is not None:
            body["ratios"]["p50_over_direct_p50"] = ratio(p50, direct.summary.p50)
            body["ratios"]["p50_minus_direct_p50_ms"] = p50 - direct.summary.p50
        return body


def ratio(value: float, base: float) -> float:
    return value / base if base and not math.isnan(base) else math.nan


def ms(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def times(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}×" if value < 100 else f"{value:.0f}×"


def rate(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def cpu_cells(item: Measurement) -> list[str]:
    per_call = item.cpu_ms_per_call()
    if per_call is None:
        return ["–", "–"]
    return [ms(per_call[0]), ms(per_call[1])]


def render(results: Results) -> str:
    meta = results.meta
    lines = [f"## codeapi benchmark: {meta.get('backend')} backend", ""]
    lines += [
        f"- {meta.get('date')}, commit `{meta.get('commit')}`; {meta.get('cpu')} x{meta.get('cores')}, "
        f"{meta.get('memory_gib')} GiB, kernel {meta.get('kernel')}, Python {meta.get('python')}",
        f"- server: event loop `{meta.get('server_loop')}`, Python {meta.get('python_fast_path')}, `/health` backends {meta.get('health_backends')}, ready {ms(meta.get('startup_s', math.nan) * 1000)} ms "
        f"after spawn; samples: {meta.get('samples')}",
        f"- command: `{meta.get('command')}`",
    ]
    lines += [f"- **{note}**" for note in results.notes]
    lines.append(
        "- latencies are client-side wall times in ms; API CPU / sandbox CPU = CPU time of the server process / "
        "of its reaped children (nsjail and the sandboxed programs) per request, from /proc (10 ms ticks)"
    )
    nsjail, http = results.reference("nsjail"), results.reference("http")
    if results.floor:
        lines += ["", "### Floor (same run)", ""]
        rows = [
            [item.name, str(item.summary.n), ms(item.summary.p50), ms(item.summary.p90), ms(item.summary.p99),
             ms(item.summary.mean), str(len(item.errors))]
            for item in results.floor
        ]  # fmt: skip
        lines += table(["floor", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms", "errors"], rows)
    if results.languages:
        lines += language_table(results, nsjail, http)
    if results.python:
        lines += ["", "### Python workloads", ""]
        lines.append(
            f"Python path: {results.meta.get('python_fast_path', '?')}. bare = the same code run by the same "
            "interpreter outside the sandbox (print(1) and the sessions: `python3 -c pass`); "
            "server sandbox = the server's mean sandbox wall time per execution; sandboxes after = the server's "
            "job cgroups alive when the scenario ended (kept REPL sandboxes, zygote) and the memory charged to them."
        )
        lines.append("")
        rows = []
        for item in results.python:
            bare = results.floor_p50(str(item.labels.get("bare")))
            rows.append(
                [item.name, str(item.concurrency), str(item.attempts), ms(item.summary.p50), ms(item.summary.p90),
                 ms(item.summary.p99), rate(item.throughput), str(len(item.errors)), ms(item.summary.mean),
                 ms(item.server_sandbox_ms()), *cpu_cells(item), resident(item), ms(bare),
                 times(ratio(item.summary.p50, bare)), times(ratio(item.summary.p50, nsjail))]
            )  # fmt: skip
        header = ["workload", "conc", "n", "p50 ms", "p90 ms", "p99 ms", "req/s", "errors", "mean", "server sandbox mean",
                  "API CPU ms/req", "sandbox CPU ms/req", "sandboxes after (MiB)", "bare p50", "p50 / bare",
                  "p50 / nsjail"]  # fmt: skip
        lines += table(header, rows)
    if results.targets:
        lines += target_table(results, http)
    if results.files:
        lines += ["", "### Upload / download (sequential)", ""]
        rows = []
        for item in results.files:
            size = int(item.labels.get("bytes", 0))
            p50_s = item.summary.p50 / 1000
            rows.append(
                [item.name, str(item.attempts), ms(item.summary.p50), ms(item.summary.p90), ms(item.summary.p99),
                 rate(size / MB / p50_s if p50_s > 0 else math.nan), rate(item.throughput), str(len(item.errors)),
                 cpu_cells(item)[0]]
            )  # fmt: skip
        lines += table(
            ["transfer", "n", "p50 ms", "p90 ms", "p99 ms", "MiB/s at p50", "req/s", "errors", "API CPU ms/req"],
            rows,
        )  # fmt: skip
    failing = [item for item in results.all() if item.errors or item.labels.get("warmup_errors")]
    if failing:
        lines += ["", "### Errors", ""]
        for item in failing:
            shown = item.errors[:3] or item.labels.get("warmup_errors", [])
            lines.append(f"- {item.name} (conc {item.concurrency}): {len(item.errors)} errors; e.g. {shown}")
    return "\n".join(lines) + "\n"


def language_table(results: Results, nsjail: float, http: float) -> list[str]:
    by_lang: dict[str, dict[int, Measurement]] = {}
    for item in results.languages:
        by_lang.setdefault(str(item.labels["lang"]), {})[item.concurrency] = item
    parallel = max(item.concurrency for item in results.languages)
    fast_path = str(results.meta.get("python_fast_path", ""))
    warm = fast_path.startswith("warm")
    lines = ["", "### /exec hello world per language: latency", ""]
    lines.append("seq = sequential (one request at a time, every request a new session); cN = N at a time.")
    if warm:
        lines.append(f"py* = Python on the fast path: {fast_path}.")
    lines.append("")
    header = ["lang", "seq p50", "seq p90", "seq p99", "seq req/s"]
    if parallel > 1:
        header += [f"c{parallel} p50", f"c{parallel} p90", f"c{parallel} p99", f"c{parallel} req/s"]
    header.append("errors")
    rows = []
    for lang, by_level in by_lang.items():
        seq, par = by_level.get(1), by_level.get(parallel) if parallel > 1 else None
        row = [f"{lang}*" if lang == "py" and warm else lang]
        row += latency_cells(seq) + (latency_cells(par) if parallel > 1 else [])
        row.append(str(sum(len(item.errors) for item in by_level.values())))
        rows.append(row)
    lines += table(header, rows)
    lines += ["", "### /exec hello world per language: where the time goes (sequential)", ""]
    lines.append(
        "direct = the same program through ProgramRunner in this process, without HTTP, sessions or storage "
        "(the one-shot path), interleaved with the /exec requests; server sandbox = the server's own mean "
        "sandbox wall time per execution (codeapi_execution_seconds; it times the run step only, so it is left "
        "out for compiled languages); overhead = exec mean − server sandbox mean."
    )
    lines.append("")
    header = ["lang", "direct p50", "exec p50", "exec − direct", "exec mean", "server sandbox mean", "overhead",
              "API CPU ms/req", "sandbox CPU ms/req", "exec / direct", "exec / nsjail", "exec / HTTP"]  # fmt: skip
    rows = []
    for lang, by_level in by_lang.items():
        seq = by_level.get(1)
        if seq is None:
            continue
        direct = results.direct.get(lang)
        direct_p50 = direct.summary.p50 if direct else math.nan
        p50, mean, sandbox = seq.summary.p50, seq.summary.mean, seq.server_sandbox_ms()
        if lang in COMPILED:
            sandbox = math.nan  # the server's metric times the run step only, not the compile step
        rows.append(
            [f"{lang}*" if lang == "py" and warm else lang, ms(direct_p50), ms(p50), ms(p50 - direct_p50), ms(mean),
             ms(sandbox), ms(mean - sandbox), *cpu_cells(seq), times(ratio(p50, direct_p50)), times(ratio(p50, nsjail)),
             times(ratio(p50, http))]
        )  # fmt: skip
    lines += table(header, rows)
    return lines


def target_table(results: Results, http: float) -> list[str]:
    repl = results.reference("repl")
    lines = ["", "### Python fast path: targets", ""]
    lines.append(
        "Through HTTP, each against the floor of this run: an empty HTTP round trip and a raw `print(1)` round trip "
        "to a warm REPL (no HTTP, sessions or storage). Chat turns continue one session per client (state saved "
        "after every call); new sessions start a fresh sandbox for every request."
    )
    lines.append("")
    rows = [
        [item.name, str(item.concurrency), str(item.attempts), ms(item.summary.p50), ms(item.summary.p90),
         ms(item.summary.p99), rate(item.throughput), str(len(item.errors)), *cpu_cells(item),
         times(ratio(item.summary.p50, http)), times(ratio(item.summary.p50, repl)), verdict(item)]
        for item in results.targets
    ]  # fmt: skip
    header = ["scenario", "conc", "n", "p50 ms", "p90 ms", "p99 ms", "req/s", "errors", "API CPU ms/req",
              "sandbox CPU ms/req", "p50 / HTTP", "p50 / REPL", "target met"]  # fmt: skip
    return lines + table(header, rows)


def resident(item: Measurement) -> str:
    found = item.labels.get("sandboxes_after") or {}
    if not found:
        return "–"
    return f"{int(found['count'])} ({found['memory_mib']:.0f})"


def latency_cells(item: Measurement | None) -> list[str]:
    if item is None:
        return ["–"] * 4
    return [ms(item.summary.p50), ms(item.summary.p90), ms(item.summary.p99), rate(item.throughput)]
