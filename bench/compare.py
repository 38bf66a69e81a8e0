"""Two benchmark runs side by side as ratios to their own floors, e.g. this host against the cgroup-v2
guest, where software emulation makes absolute times meaningless but a ratio to the nsjail start and
the empty HTTP round trip measured in the same run still says what the API adds.

    python -m bench.compare host.json guest.json --names host,guest
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.report import ms, table, times

SECTIONS = ("languages", "targets")
RATIOS = (("p50_over_nsjail_true_p50", "/ nsjail"), ("p50_over_http_health_p50", "/ HTTP"))


def load(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def rows_by_name(run: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in run.get(section) or []}


def floors(runs: list[dict[str, Any]], names: list[str]) -> list[str]:
    header = ["floor", *(f"{name} p50 ms" for name in names), f"{names[-1]} / {names[0]}"]
    found = [rows_by_name(run, "floor") for run in runs]
    rows = []
    for floor in found[0]:
        if all(floor in other for other in found[1:]):
            p50s = [other[floor]["summary_ms"]["p50"] for other in found]
            rows.append([floor, *map(ms, p50s), times(p50s[-1] / p50s[0])])
    return table(header, rows)


def ratios(runs: list[dict[str, Any]], names: list[str], section: str) -> list[str]:
    header = ["scenario"]
    for name in names:
        header += [f"{name} p50 ms", *(f"{name} {label}" for _, label in RATIOS)]
    found = [rows_by_name(run, section) for run in runs]
    rows = []
    for scenario in found[0]:
        if not all(scenario in other for other in found[1:]):
            continue
        cells = [scenario]
        for other in found:
            item = other[scenario]
            cells += [ms(item["summary_ms"]["p50"]), *(times(item["ratios"][key]) for key, _ in RATIOS)]
        rows.append(cells)
    return table(header, rows)


def render(runs: list[dict[str, Any]], names: list[str]) -> str:
    lines = ["### Floors", "", *floors(runs, names)]
    for section in SECTIONS:
        lines += ["", f"### {section.capitalize()}: p50 and its ratio to the same run's floors", ""]
        lines += ratios(runs, names, section)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="--out JSON files of bench.run")
    parser.add_argument("--names", help="comma-separated column names (default: the file names)")
    args = parser.parse_args(argv)
    names = args.names.split(",") if args.names else [path.stem for path in args.runs]
    if len(names) != len(args.runs):
        parser.error("--names needs one name per run")
    print(render([load(path) for path in args.runs], names), end="")  # noqa: T201 - the report
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
