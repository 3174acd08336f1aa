"""`simulate --from-prometheus URL --target NS/DEPLOY --since 7d`: replay a deployment's real history.

"What would each policy have done last week": the request-rate history of one TF Serving model is
pulled from Prometheus (`sources.history.fetch_rate_history`, served + rejected requests, chunked
range queries) and replayed through the same simulator and report as a trace file. Lives at the
command layer because it joins two siblings the simulator itself must not import (sources, sim).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from autoscaler.commands.replay_console import print_table, progress_bars, progress_factory
from autoscaler.core.multimodel import spec_for_mix
from autoscaler.core.types import FloatArray
from autoscaler.runtime.clock import WallClock
from autoscaler.sim.compare import compare_rates
from autoscaler.sim.policies import registry
from autoscaler.sim.report import write_report
from autoscaler.sim.shipped import DEFAULT_SPEC
from autoscaler.sources.history import HistoryError, fetch_rate_history
from autoscaler.spec import SpecError, load_spec
from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef

_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhdw]?)$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def parse_duration_s(text: str, field: str) -> float:
    """'7d', '36h', '90m', '600s' or plain seconds -> seconds; a clear error otherwise."""
    m = _DURATION.match(text.strip())
    if m is None or float(m["n"]) <= 0:
        raise ValueError(f"{field}: expected a positive duration like 7d, 36h, 90m or 600 (got {text!r})")
    return float(m["n"]) * _UNIT_S[m["unit"]]


def fill_gaps(rate: FloatArray) -> tuple[FloatArray, int]:
    """Interpolate NaN steps (scrape gaps) between known neighbours; trim leading/trailing NaN."""
    known = np.flatnonzero(~np.isnan(rate))
    if len(known) == 0:
        return rate[:0], 0
    rate = rate[known[0] : known[-1] + 1]
    idx = np.arange(len(rate))
    ok = ~np.isnan(rate)
    gaps = int((~ok).sum())
    return np.interp(idx, idx[ok], rate[ok]), gaps


def target_spec(args: argparse.Namespace) -> ServingAutoscalerSpec:
    ns, sep, deploy = (args.target or "").partition("/")
    if not sep or not ns or not deploy:
        raise ValueError(f"--target: expected NAMESPACE/DEPLOYMENT (got {args.target!r})")
    base = load_spec(args.spec) if args.spec else load_spec(DEFAULT_SPEC)
    model = args.model or (base.target.model_name if base.target.deployment == deploy else deploy)
    t = base.target
    models = t.models if not args.model and t.deployment == deploy else ()  # a multi-model spec: every model
    target = TargetRef(ns, deploy, model, t.rest_port, t.grpc_port, t.container, t.batching_configmap, models)
    own = next((m.profile for m in t.models if m.name == args.model and m.profile is not None), base.profile)
    # the replay serves the models' summed load at the spec's shares (one fixed mix: core/multimodel.py)
    return spec_for_mix(replace(base, target=target, profile=own))


def run_from_prometheus(args: argparse.Namespace, console: Console) -> int:
    try:
        spec = target_spec(args)
        since_s = parse_duration_s(args.since, "--since")
        history_s = parse_duration_s(args.history, "--history") if args.history else 0.0
        step_s = float(args.step_s)
        if step_s <= 0:
            raise ValueError(f"--step-s: expected a positive number of seconds (got {args.step_s})")
        policies = [p.strip() for p in args.policies.split(",")] if args.policies else registry.names()
        for p in policies:
            if p not in registry.POLICIES:
                raise ValueError(f"--policies: unknown policy {p!r} (expected one of {', '.join(registry.names())})")
    except (ValueError, SpecError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    now_s = WallClock().now_s()
    try:
        steps = fetch_rate_history(
            args.from_prometheus, spec, since_s=now_s - since_s - history_s, step_s=step_s, now_s=now_s
        )
    except HistoryError as e:
        console.print(f"[red]error:[/red] --from-prometheus {args.from_prometheus}: {e}")
        return 1
    n_hist = int(history_s // step_s)
    hist_steps, window_steps = steps[:n_hist], steps[n_hist:]
    window, gaps = fill_gaps(window_steps)
    if len(window) == 0:
        console.print(
            f"[red]error:[/red] Prometheus has no request rate for model {spec.target.model_name!r} in namespace "
            f"{spec.target.namespace!r} over the last {args.since} (query :tensorflow:serving:request_count)"
        )
        return 1
    rate_per_s = np.repeat(window, int(step_s))
    hist_per_s = np.repeat(hist_steps, int(step_s)) if n_hist else None
    console.print(
        f"[bold]{spec.target.namespace}/{spec.target.deployment}[/bold] (model {spec.target.model_name}) from "
        f"{args.from_prometheus}: {len(window)} steps of {step_s:g} s, peak {np.max(window):.1f} rps, "
        f"mean {np.mean(window):.1f} rps; {gaps} gap step(s) interpolated"
    )
    out = args.out or Path("runs") / f"prometheus-{spec.target.namespace}-{spec.target.deployment}"
    with progress_bars(console) as prog:
        results, errors = compare_rates(
            rate_per_s,
            spec,
            policies,
            name=f"prometheus:{spec.target.namespace}/{spec.target.deployment}",
            history_rps=hist_per_s,
            progress_for=progress_factory(prog),
        )
    for pol, err in errors.items():
        console.print(f"[red]{pol}: failed: {err}[/red]")
    if results:
        write_report(results, out)
        print_table(results, console)
    console.print(f"wrote {out}/ (summary.json, report.html)")
    return 0 if results else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("replay real history from Prometheus")
    g.add_argument("--from-prometheus", metavar="URL", help="Prometheus base URL to pull the request-rate history from")
    g.add_argument("--target", metavar="NS/DEPLOY", help="the Deployment whose TF Serving model to replay")
    g.add_argument("--model", help="TF Serving model name (default: the spec's, or the Deployment name)")
    g.add_argument("--since", default="7d", help="how far back to replay (e.g. 7d, 36h; default 7d)")
    g.add_argument("--history", help="extra history before the window for forecaster warm-up (e.g. 2d)")
    g.add_argument("--step-s", type=float, default=60.0, help="history resolution in seconds (default 60)")
