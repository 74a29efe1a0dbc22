"""The one command: start what is needed, run the scenarios, write the results, stop it all."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shlex
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.core import Context, ScenarioResult
from bench.infra import LOG_DIR, ROOT, WORK_DIR, database_server, machine_info, scratch_name

RESULTS_DIR = ROOT / "bench" / "results"


def build_parser() -> argparse.ArgumentParser:
    from bench.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="tiketi's benchmark suite: every scenario against a baseline measured in "
        "the same run. Starts (and stops) its own scratch database, API servers and clients.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs (the whole suite in < 5 minutes)"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios to run (of: {', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API worker processes (`tiketi serve --workers N`; the baselines get the same); "
        "default 1, which leaves the second core of a 2-core machine to the client and "
        "PostgreSQL",
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=None,
        help="run the API servers from this directory's `tiketi` package (PYTHONPATH) instead "
        "of the installed one: A/B runs against a modified copy of src/",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR,
        help="a folder for latest.json and latest.md (default bench/results), or a file "
        "name ending in .json (the .md is written beside it)",
    )
    return parser


def _raise_fd_limit() -> None:
    """Thousands of SSE clients need thousands of descriptors (here and in the server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 65_536) if hard != resource.RLIM_INFINITY else 65_536
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def log(message: str) -> None:
    print(message, flush=True)


def _prune_logs() -> None:
    """Log folders of earlier runs whose process is gone."""
    import shutil

    for folder in (WORK_DIR / "logs").glob("*"):
        if folder != LOG_DIR and folder.is_dir() and folder.name.isdigit():
            try:
                os.kill(int(folder.name), 0)
            except ProcessLookupError:
                shutil.rmtree(folder, ignore_errors=True)
            except PermissionError:
                pass


def _print_result(result: ScenarioResult) -> None:
    if result.status != "ok":
        log(f"[{result.name}] {result.status}: {'; '.join(result.notes)}")
        return
    ratio = "-" if result.ratio is None else f"{result.ratio:.2f}x"
    log(f"[{result.name}] {result.figure_label}: {result.figure_text}")
    log(f"[{result.name}] baseline {result.baseline_label}: {result.baseline_text}")
    log(f"[{result.name}] ratio {ratio}   client CPU {result.client_cpu}")
    for goal in result.goals:
        mark = {True: "MET   ", False: "MISSED", None: "n/a   "}[goal.met]
        log(f"[{result.name}]   {mark} {goal.text}")
    for note in result.notes:
        log(f"[{result.name}]   note: {note}")


async def run_suite(args: argparse.Namespace, names: list[str]) -> int:
    from bench.scenarios import SCENARIOS

    started = time.monotonic()
    machine = machine_info()
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": ("python -m bench " + shlex.join(sys.argv[1:])).strip(),
        "quick": args.quick,
        "workers": args.workers,
        "src": str(args.src) if args.src else "installed tiketi",
        "machine": machine,
        "scenarios": names,
    }
    log(
        f"tiketi bench — {machine['nproc']} CPUs, {machine['ram_gib']} GiB RAM, "
        f"{args.workers} API worker(s), {'quick' if args.quick else 'full'} run"
    )
    log(
        f"note: client, server(s) and PostgreSQL share {machine['nproc']} cores; the client's "
        "own CPU use is reported with every figure"
    )
    log(f"server logs: {LOG_DIR.relative_to(ROOT)}/")
    _prune_logs()
    results: list[ScenarioResult] = []
    interrupted = False
    try:
        async with database_server() as server:
            meta["database"] = {"kind": server.kind, "version": server.version}
            log(f"database: PostgreSQL {server.version} ({server.kind})")
            template = scratch_name("template")
            await server.create(template)
            from tiketi.core.migrations import upgrade_to_head

            await asyncio.to_thread(upgrade_to_head, server.url(template))
            log("migrated the template database to head")
            for name in names:
                log(f"\n== {name} ==")
                t0 = time.monotonic()
                async with contextlib.AsyncExitStack() as stack:
                    ctx = Context(
                        quick=args.quick,
                        workers=args.workers,
                        server=server,
                        template=template,
                        stack=stack,
                        log=log,
                        src=str(args.src.resolve()) if args.src else None,
                    )
                    try:
                        result = await SCENARIOS[name](ctx)
                    except Exception as exc:
                        result = ScenarioResult(name, status="failed")
                        result.notes.append(f"{type(exc).__name__}: {exc}"[:2000])
                        result.details["traceback"] = traceback.format_exc()[-4000:]
                        log(traceback.format_exc())
                result.seconds = round(time.monotonic() - t0, 1)
                results.append(result)
                _print_result(result)
    except (asyncio.CancelledError, KeyboardInterrupt):
        interrupted = True
        log("\ninterrupted: everything started has been stopped")
    meta["interrupted"] = interrupted
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta.setdefault("database", {"kind": "?", "version": "?"})
    if results:
        json_path, md_path = report.write(args.output, meta, results)
        shown = json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path
        log(f"\nresults: {shown}, {md_path.name}  ({meta['seconds']:.0f} s)")
        log("\n" + md_path.read_text())
    if interrupted:
        return 130
    return 1 if any(r.status == "failed" for r in results) else 0


def main(argv: list[str] | None = None) -> None:
    from bench.scenarios import SCENARIOS

    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)} (of: {', '.join(SCENARIOS)})")
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    _raise_fd_limit()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    (WORK_DIR / ".gitignore").write_text("*\n")

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        # Ctrl-C and SIGTERM cancel the run; the cleanup (stopping servers, dropping scratch
        # databases) then runs to its end: further signals only say so. Installed here, not
        # left to the runner, so that a run started where SIGINT is ignored still stops.
        loop = runner.get_loop()
        main_task: asyncio.Task[Any] | None = None
        stopping = False

        def terminate() -> None:
            nonlocal stopping
            if stopping:
                log("still stopping what was started; please wait")
                return
            stopping = True
            if main_task is not None:
                main_task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, terminate)

        async def start() -> int:
            nonlocal main_task
            main_task = asyncio.current_task()
            return await run_suite(args, names)

        code = runner.run(start())
    raise SystemExit(code)
