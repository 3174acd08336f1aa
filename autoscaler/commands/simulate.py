"""`tfserving-autoscaler simulate`: replay a trace through our policy and the baselines.

Owns the command line of the what-if simulator: a scenario file (`simulations/<name>.yaml`) or
`--trace/--spec` flags, the per-policy rich progress bars, the comparison table at the end and
the report directory (summary.json, timelines, PNGs, report.html — `sim/report.py`).
With no arguments it runs the default shipped scenario into `runs/<scenario>/`.

History fetched from Prometheus (`--from-prometheus URL --target NS/DEPLOY --since 7d`,
`simulate_history.py`) runs the same comparison from a per-second rate array (`sim/compare.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from autoscaler.commands.replay_console import print_table, progress_bars
from autoscaler.sim import engine
from autoscaler.sim.engine import SimResult
from autoscaler.sim.policies import registry
from autoscaler.sim.report import write_report
from autoscaler.sim.reqlevel import ROUTINGS
from autoscaler.sim.scenario import (
    DEFAULT_SCENARIO,
    Inputs,
    Scenario,
    ScenarioError,
    load_inputs,
    load_scenario,
)
from autoscaler.sim.shipped import DEFAULT_SPEC, default_runs_dir
from autoscaler.spec import SpecError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", nargs="?", help="scenario file or shipped scenario name (simulations/*.yaml)")
    parser.add_argument("--trace", help="trace file or shipped trace name (instead of a scenario)")
    parser.add_argument("--spec", help="ServingAutoscaler spec file (default: examples/resnet50-t4.yaml)")
    parser.add_argument("--policies", help=f"comma-separated policies (default: all: {','.join(registry.names())})")
    parser.add_argument(
        "--out", type=Path, help="output directory (default: runs/<scenario>; installed: under the working directory)"
    )
    parser.add_argument("--fidelity", choices=engine.FIDELITIES, help="fluid (fast, default) or request (exact)")
    parser.add_argument(
        "--routing",
        choices=ROUTINGS,
        default="random",
        help="request fidelity: how requests pick a ready pod — random (kube-proxy, seeded; default) or round-robin",
    )
    parser.add_argument("--rate-scale", type=float, help="multiply the trace's request rate")
    parser.add_argument(
        "--true-service-scale",
        type=float,
        metavar="X",
        help="the simulated replicas serve X times slower than the spec's profile says (1.15 = 15 %% slower; "
        "default: the scenario's, else 1); the policies still plan with the profile and must calibrate",
    )
    parser.add_argument(
        "--target-peak-replicas",
        type=float,
        help="scale so the busiest second needs N replicas (default 20; at most the spec's maxReplicas)",
    )
    parser.add_argument(
        "--superpose-s",
        type=float,
        metavar="S",
        help="scale by superposition: the scaled trace behaves like independent copies of the logged population "
        "with phases spread over S seconds (expected load: the S-second moving average, times the scale) instead "
        "of duplicating every logged request; for sparse 1 s traces. 0 turns off the scenario's setting",
    )
    parser.add_argument("--start-s", type=float, help="window start in the trace, seconds")
    parser.add_argument("--duration-s", type=float, help="window length, seconds")
    parser.add_argument("--history-s", type=float, help="history before the window for warm-up, seconds")
    parser.add_argument("--seed", type=int, help="random seed (startup delays, arrivals)")
    parser.add_argument(
        "--knob",
        action="append",
        default=[],
        metavar="POLICY.KNOB=VALUE",
        help="override a policy knob, e.g. predictive.headroom=0.15 (repeatable)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip PNGs (summary, timelines, HTML only)")
    parser.add_argument("--no-timelines", action="store_true", help="skip the per-second timeline CSVs")
    from autoscaler.commands.simulate_history import add_arguments

    add_arguments(parser)


def parse_knobs(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        pol, dot, knob = key.partition(".")
        if not sep or not dot or not pol or not knob:
            raise ValueError(f"--knob {item!r}: expected POLICY.KNOB=VALUE, e.g. predictive.headroom=0.15")
        if pol not in registry.POLICIES:
            raise ValueError(f"--knob {item!r}: unknown policy {pol!r} (expected one of {', '.join(registry.names())})")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(pol, {})[knob] = value
    return out


def _scenario_from_args(args: argparse.Namespace) -> Scenario:
    if args.scenario and args.trace:
        raise ScenarioError("give either a scenario file or --trace, not both")
    if args.trace:
        spec_path = Path(args.spec) if args.spec else DEFAULT_SPEC
        name = Path(args.trace).name.split(".")[0]
        peak = None if args.rate_scale is not None else args.target_peak_replicas  # None: the default (20)
        return Scenario(
            name=name,
            trace=args.trace,
            spec_path=spec_path,
            source="<command line>",
            target_peak_replicas=peak,
            policies=tuple(registry.names()),  # no --policies: every policy, as with a scenario file
        )
    sc = load_scenario(args.scenario or DEFAULT_SCENARIO)
    if args.spec:
        sc = replace(sc, spec_path=Path(args.spec))
    return sc


def _true_service_scale(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"--true-service-scale: expected a finite number > 0, e.g. 1.15 (got {value!r})")
    return value


def run(args: argparse.Namespace) -> int:
    console = Console(width=None if sys.stdout.isatty() else 120)
    if args.from_prometheus:
        from autoscaler.commands.simulate_history import run_from_prometheus

        return run_from_prometheus(args, console)
    try:
        sc = _scenario_from_args(args)
        overrides: dict[str, Any] = {
            "start_s": args.start_s,
            "duration_s": args.duration_s,
            "history_s": args.history_s,
            "fidelity": args.fidelity,
            "seed": args.seed,
            "true_service_scale": _true_service_scale(args.true_service_scale),
        }
        if args.superpose_s == 0:
            sc = replace(sc, superpose_s=None)  # back to duplication
        elif args.superpose_s is not None:
            overrides["superpose_s"] = args.superpose_s
        if args.rate_scale is not None:
            overrides["rate_scale"] = args.rate_scale  # takes precedence over target_peak_replicas
        elif args.target_peak_replicas is not None:
            overrides["target_peak_replicas"] = args.target_peak_replicas
        inputs = load_inputs(sc, **overrides)
        policies = [p.strip() for p in args.policies.split(",")] if args.policies else list(inputs.scenario.policies)
        policies = policies or registry.names()
        for p in policies:
            if p not in registry.POLICIES:
                raise ValueError(f"--policies: unknown policy {p!r} (expected one of {', '.join(registry.names())})")
        knobs = {**inputs.scenario.knobs}
        for pol, kv in parse_knobs(args.knob).items():
            knobs[pol] = {**knobs.get(pol, {}), **kv}
    except (ScenarioError, SpecError, ValueError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    out = args.out or default_runs_dir() / inputs.scenario.name
    scale = inputs.scenario.true_service_scale
    speed = "" if scale == 1.0 else f"replicas serve ×{scale:g} the profile's service time, "
    console.print(
        f"[bold]{inputs.scenario.name}[/bold]: {inputs.trace.name}, {inputs.trace.duration_s / 3600:.1f} h from "
        f"t={inputs.trace.start_s:g} s, rate ×{inputs.rate_scale:.4g}"
        f"{'' if inputs.scenario.superpose_s is None else f' (superposed over {inputs.scenario.superpose_s:g} s)'}, "
        f"{inputs.scenario.fidelity} fidelity"
        f"{f' ({args.routing} routing)' if inputs.scenario.fidelity == 'request' else ''}, {speed}"
        f"{len(inputs.history_rps) / 86400:.1f} d history"
    )
    results = compare(inputs, policies, knobs, console=console, routing=args.routing)
    if not results:
        console.print(f"[red]error:[/red] no policy produced a result (tried {', '.join(policies)})")
        return 1
    path = write_report(results, out, timelines=not args.no_timelines, plots=not args.no_plots)
    print_table(results, console)
    console.print(f"wrote {path.parent}/ (summary.json, report.html{'' if args.no_plots else ', *.png'})")
    return 0


def compare(
    inputs: Inputs,
    policies: Sequence[str],
    knobs: Mapping[str, Mapping[str, Any]],
    *,
    console: Console,
    routing: str = "random",
) -> list[SimResult]:
    """Run every policy on the scenario's trace, with a progress bar per policy."""
    results: list[SimResult] = []
    sc = inputs.scenario
    with progress_bars(console) as prog:
        for name in policies:
            task = prog.add_task(name, total=inputs.trace.n_seconds)

            def tick(done: int, total: int, task: Any = task) -> None:
                prog.update(task, completed=done)

            try:
                res = engine.run(
                    inputs.trace,
                    inputs.spec,
                    name,
                    fidelity=sc.fidelity,
                    seed=sc.seed,
                    progress=tick,
                    knobs=knobs.get(name, {}),
                    history_rps=inputs.history_rps,
                    routing=routing,
                    true_service_scale=sc.true_service_scale,
                )
            except Exception as e:  # one broken policy must not lose the others' results
                console.print(f"[red]{name}: failed: {type(e).__name__}: {e}[/red]")
                continue
            results.append(res)
    return results


