"""bench/results/latest.json (everything) and latest.md (the table to commit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.core import ScenarioResult

CONTENTION_NOTE = (
    "On this machine the load generator, the API process(es) and PostgreSQL share "
    "{nproc} CPU cores: every figure is the throughput of the whole stack on one box, not of "
    "the server alone, and tiketi and its baseline pay the same client cost. The *client CPU* "
    "column is what the load generator itself burned while measuring (share of one core)."
)


def _mark(met: bool | None) -> str:
    return {True: "✅", False: "❌", None: "-"}[met]


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def write(
    directory: Path, meta: dict[str, Any], results: list[ScenarioResult]
) -> tuple[Path, Path]:
    """`directory`/latest.json and latest.md; or, given a path ending in .json, that file and
    the .md beside it."""
    if directory.suffix == ".json":
        json_path, md_path = directory, directory.with_suffix(".md")
    else:
        json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "scenarios": [r.as_json() for r in results]}
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    md_path.write_text(markdown(meta, results, details=json_path.name))
    return json_path, md_path


def markdown(
    meta: dict[str, Any], results: list[ScenarioResult], *, details: str = "latest.json"
) -> str:
    machine = meta["machine"]
    lines = [
        f"# tiketi benchmarks — {meta['date']}",
        "",
        f"- command: `{meta['command']}`" + (" (interrupted)" if meta.get("interrupted") else ""),
        f"- machine: {machine['nproc']} CPUs ({machine['cpu'] or 'unknown model'}), "
        f"{machine['ram_gib']} GiB RAM, Linux {machine['kernel']}, Python {machine['python']}",
        f"- database: PostgreSQL {meta['database']['version']} ({meta['database']['kind']})",
        f"- API workers: {meta['workers']} (`tiketi serve --workers {meta['workers']}`; "
        "sse_fanout always uses one process)",
        f"- total time: {meta['seconds']:.0f} s",
        "",
        "> " + CONTENTION_NOTE.format(nproc=machine["nproc"]),
        "",
        "| scenario | tiketi | baseline (same run) | ratio | goals | client CPU |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.status != "ok":
            reason = r.notes[0] if r.notes else r.status
            lines.append(f"| {r.name} | {r.status}: {reason} | | | | |")
            continue
        goals = "<br>".join(f"{_mark(g.met)} {g.text}" for g in r.goals)
        lines.append(
            f"| {r.name} | {r.figure_text} | {r.baseline_text} | {_ratio(r.ratio)} | "
            f"{goals} | {r.client_cpu} |"
        )
    notes = [(r.name, n) for r in results if r.status == "ok" for n in r.notes]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- **{name}**: {note}" for name, note in notes]
    lines += [
        "",
        f"Details (every run, latency percentiles, server CPU, database checks): `{details}` "
        "beside this file. What each scenario measures: `docs/benchmarks.md`.",
        "",
    ]
    return "\n".join(lines)
