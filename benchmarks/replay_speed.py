"""Replay speed: seconds of wall time to replay 7 days of 1 s traffic through each policy (fluid).

The what-if simulator must be fast enough to compare every policy on a week of real traffic
interactively: target ≤ 10 s per policy for the 7-day, 1 s NASA-HTTP window (604,800 steps,
scaled so the busiest second needs 30 T4 replicas). Tables are built once (a first untimed run
of a cheap policy) and statsmodels is imported up front, so the numbers are the replay itself.
The machine is shared and its speed drifts by tens of percent within minutes, so the policies run
in `--repeat` interleaved rounds (default 3: every policy once per round, so each sees the same
conditions) and the median per policy is reported, with each round's time for a fixed pure-Python
reference loop (`reference_ms`: a slow round shows there too). CPU seconds of the process
(`cpu_s`, `time.process_time`) are reported next to wall time: on a shared machine they are the
steadier measure. Writes benchmarks/results/replay_speed.json.

    .venv/bin/python benchmarks/replay_speed.py [--policies a,b] [--days 7] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autoscaler.core.decide import clear_model_caches
from autoscaler.sim import engine
from autoscaler.sim.policies import registry
from autoscaler.sim.scenario import load_inputs, load_scenario

RESULTS = Path(__file__).resolve().parent / "results" / "replay_speed.json"
TARGET_S = 10.0


def _reference_ms() -> float:
    """Best of 5 of a fixed pure-Python loop (ms): how fast the machine runs Python right now."""
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        sum(i * i for i in range(200_000))
        best = min(best, time.perf_counter() - t)
    return best * 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", help="comma-separated (default: all)")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per policy; the median is reported")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    console = Console(width=120)
    policies = args.policies.split(",") if args.policies else registry.names()
    t0 = time.perf_counter()
    inp = load_inputs(load_scenario("nasa-1s-7d"), duration_s=args.days * 86_400.0)
    load_s = time.perf_counter() - t0
    engine.run(inp.trace, inp.spec, "static-peak")  # builds the fluid tables (untimed)
    import statsmodels.tsa.holtwinters  # noqa: F401  (the forecasters import it lazily; ~2 s once per process)

    walls: dict[str, list[float]] = {name: [] for name in policies}
    cpus: dict[str, list[float]] = {name: [] for name in policies}
    summaries: dict[str, dict[str, object]] = {name: {} for name in policies}
    errors: dict[str, str | None] = {name: None for name in policies}
    reference_ms: list[float] = []
    for k in range(args.repeat):
        reference_ms.append(_reference_ms())
        for name in policies:
            if errors[name] is not None:
                continue
            clear_model_caches()  # every run starts cold, as one `simulate` run does (fluid tables excepted)
            t, c = time.perf_counter(), time.process_time()
            try:
                summaries[name] = engine.run(inp.trace, inp.spec, name, history_rps=inp.history_rps).summary
            except Exception as e:  # report, keep measuring the others
                errors[name] = f"{type(e).__name__}: {e}"
                continue
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
            console.print(f"round {k + 1}: {name} {walls[name][-1]:.1f} s wall, {cpus[name][-1]:.1f} s CPU")
    rows = []
    for name in policies:
        wall = statistics.median(walls[name]) if walls[name] else math.nan
        s = summaries[name]
        rows.append(
            {
                "policy": name,
                "wall_s": wall,
                "wall_s_runs": walls[name],
                "cpu_s": statistics.median(cpus[name]) if cpus[name] else math.nan,
                "cpu_s_runs": cpus[name],
                "seconds_replayed": inp.trace.n_seconds,
                "sim_seconds_per_wall_second": inp.trace.n_seconds / wall,
                "meets_target": wall <= TARGET_S,
                "slo_attainment": s.get("slo_attainment"),
                "replica_hours": s.get("replica_hours"),
                "error": errors[name],
            }
        )
    doc = {
        "trace": inp.trace.name,
        "window_s": inp.trace.n_seconds,
        "start_s": inp.trace.start_s,
        "rate_scale": inp.rate_scale,
        "fidelity": "fluid",
        "target_s_per_policy": TARGET_S,
        "trace_load_s": load_s,
        "reference_ms_per_round": reference_ms,
        "policies": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    t = Table(
        title=f"replay speed: {inp.trace.n_seconds:,} s of {inp.trace.name} at 1 s (fluid), target ≤ {TARGET_S:g} s"
    )
    for col in ("policy", "wall s", "CPU s", "sim-s / wall-s", "≤ target", "attainment", "replica-h"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for r in rows:
        t.add_row(
            r["policy"],
            f"{r['wall_s']:.1f}",
            f"{r['cpu_s']:.1f}",
            f"{r['sim_seconds_per_wall_second']:,.0f}",
            "[green]yes[/green]" if r["meets_target"] else "[red]no[/red]",
            "–" if r["slo_attainment"] is None else f"{r['slo_attainment'] * 100:.3f} %",
            "–" if r["replica_hours"] is None else f"{r['replica_hours']:.0f}",
        )
    console.print(t)
    console.print(f"reference loop per round: {', '.join(f'{r:.1f} ms' for r in reference_ms)}")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
