"""`tfserving-autoscaler sweep`: tune every policy's main knob per scenario; cost at the SLO goal.

Owns the command line of `sim/sweep.py`: which scenarios (default: all shipped), which policies,
how many worker processes, an optional shorter window, and the rich table of each policy's best
replica-hours among settings that reach the attainment goal, as a multiple of the oracle (grid,
then extension steps for policies that never reach it, then refinement: `sweep.run_all`); a
policy that never does says why. The full per-setting rows and the best-per-policy rows go to a
JSON file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autoscaler.sim import sweep
from autoscaler.sim.policies import registry
from autoscaler.sim.scenario import ScenarioError
from autoscaler.sim.shipped import SCENARIO_DIR, default_runs_dir


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenarios", nargs="*", help="scenario names or files (default: every simulations/*.yaml)")
    parser.add_argument("--policies", help=f"comma-separated (default: all: {','.join(registry.names())})")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--duration-s", type=float, help="shorten every scenario's window to this many seconds")
    parser.add_argument("--history-s", type=float, help="history before the window for warm-up, seconds")
    parser.add_argument("--out", type=Path, help="JSON output file (default: runs/sweep.json)")


def run(args: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 130)
    out: Path = args.out or default_runs_dir() / "sweep.json"
    scenarios = list(args.scenarios) or sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
    policies = [p.strip() for p in args.policies.split(",")] if args.policies else registry.names()
    ov: dict[str, Any] = {}
    if args.duration_s is not None:
        ov["duration_s"] = args.duration_s
    if args.history_s is not None:
        ov["history_s"] = args.history_s
    try:
        tasks = sweep.plan(scenarios, policies, overrides={s: ov for s in scenarios})
    except (ScenarioError, ValueError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    rows, best, wall_s = execute(tasks, jobs=args.jobs, console=console)
    write_json(out, rows, best, wall_s=wall_s, jobs=args.jobs)
    print_best(best, console)
    console.print(f"wrote {out}")
    return 0


def execute(
    tasks: Sequence[sweep.SweepTask], *, jobs: int, console: Console
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    t0 = time.perf_counter()
    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as prog:
        task = prog.add_task("runs", total=len(tasks))
        planned = [len(tasks)]

        def more(n: int) -> None:  # extension steps and refinement add replays as they go
            planned[0] += n
            prog.update(task, total=planned[0])

        rows = sweep.run_all(tasks, jobs=jobs, on_done=lambda _row: prog.advance(task), on_more=more)
    return rows, sweep.best_by_policy(rows), time.perf_counter() - t0


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else "inf"
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def write_json(path: Path, rows: list[dict[str, Any]], best: list[dict[str, Any]], **meta: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "best": best, "runs": rows}
    path.write_text(json.dumps(_clean(doc), indent=1) + "\n")


def print_best(best: Sequence[dict[str, Any]], console: Console) -> None:
    t = Table(title="best replica-hours among settings meeting the SLO attainment goal (× oracle)")
    for col in ("scenario", "policy", "meets/tried", "best knobs", "replica-h", "attainment", "× oracle"):
        t.add_column(col, justify="left" if col in ("scenario", "policy", "best knobs") else "right")
    for b in best:
        xo = b["x_oracle"]
        if xo is not None:
            x_cell = f"{xo:.2f}"
        elif b["best_replica_hours"] is not None:
            x_cell = "– (no oracle run)"  # met the goal, but there is nothing to compare with
        else:
            x_cell = f"[red]never meets[/red]: {b.get('never_meets_reason') or 'no setting reached the goal'}"
        t.add_row(
            b["scenario"],
            b["policy"],
            f"{b['settings_meeting_slo']}/{b['settings_tried']}",
            json.dumps(b["best_knobs"]) if b["best_knobs"] is not None else "–",
            "–" if b["best_replica_hours"] is None else f"{b['best_replica_hours']:.1f}",
            "–" if b["best_attainment"] is None else f"{b['best_attainment'] * 100:.3f} %",
            x_cell,
        )
    console.print(t)
