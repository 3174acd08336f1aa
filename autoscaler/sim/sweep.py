"""Knob sweeps: each policy's best cost at the SLO goal, relative to the oracle.

Owns the fair comparison behind the product's claim. A baseline run at its default setting is a
straw man; operators tune. So for every scenario each policy's main knob (`Policy.knob`: HPA CPU
target, RPS-per-pod target, KEDA threshold, KPA target concurrency, our headroom — and, below
headroom 0, our forecast quantile) is varied over a grid, every setting is replayed, then
(`refine`) the gap between the cheapest passing setting and its failing grid neighbour is tried at
two more points, the same for every policy; a policy is scored by its *cheapest setting that still
reaches the SLO attainment goal*, as a multiple of the oracle's
replica-hours (`x_oracle`).
Runs go to a process pool (the engine is single-threaded numpy); each worker loads a scenario's
inputs once and caches them.

Grids are in the units of each knob, derived from the spec where the knob is a rate: per-pod
RPS targets are fractions of the replica's capacity at the SLO, so the sweep brackets the right
value whatever the model or profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import engine
from autoscaler.sim.baselines import registry
from autoscaler.sim.scenario import Inputs, load_inputs, load_scenario
from autoscaler.spec.types import ServingAutoscalerSpec

RPS_FRACTIONS = (0.3, 0.45, 0.6, 0.75, 0.9)
PREDICTIVE_LEAN_QUANTILES = (0.5, 0.8)  # tried at headroom 0, below the spec's quantile


def knob_grid(policy: str, spec: ServingAutoscalerSpec) -> list[dict[str, Any]]:
    """The settings of `policy`'s main knob to try (a single default for the clairvoyant ones)."""
    cap = CapacityModel(spec.profile).capacity_at_slo_rps(spec.batching.initial, spec.slo)
    if policy in ("hpa-rps", "phpa"):
        return [{"target_rps_per_pod": round(f * cap, 1)} for f in RPS_FRACTIONS]
    if policy == "keda":
        return [{"threshold_rps": round(f * cap, 1)} for f in RPS_FRACTIONS]
    if policy == "hpa-cpu":
        return [{"target_utilization_pct": v} for v in (25, 40, 55, 70, 85)]
    if policy == "kpa":
        base = 0.7 * spec.batching.initial.max_batch_size
        return [{"target_concurrency": round(base * m, 2)} for m in (0.35, 0.7, 1.4)]
    if policy == "predictive":
        # "forecast quantile / headroom": headroom over the spec's forecast quantile, and below
        # headroom 0 (the least it can be) lower forecast quantiles
        lean = [{"forecast_quantile": q, "headroom": 0.0} for q in PREDICTIVE_LEAN_QUANTILES]
        return lean + [{"headroom": h} for h in (0.0, 0.05, 0.15, 0.25, 0.35, 0.5)]
    return [{}]


@dataclass(frozen=True)
class SweepTask:
    scenario: str
    policy: str
    knobs: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    fixed_knobs: dict[str, Any] = field(default_factory=dict)  # applied to every setting


_INPUTS: dict[tuple[str, tuple[tuple[str, Any], ...]], Inputs] = {}


def _inputs(scenario: str, overrides: dict[str, Any]) -> Inputs:
    key = (scenario, tuple(sorted(overrides.items())))
    hit = _INPUTS.get(key)
    if hit is None:
        hit = _INPUTS[key] = load_inputs(load_scenario(scenario), **overrides)
    return hit


def run_task(task: SweepTask) -> dict[str, Any]:
    """One replay (runs in a worker process); returns its summary row plus the scenario name."""
    inp = _inputs(task.scenario, task.overrides)
    knobs = {**task.fixed_knobs, **task.knobs}
    try:
        res = engine.run(
            inp.trace,
            inp.spec,
            task.policy,
            knobs=knobs,
            history_rps=inp.history_rps,
            seed=inp.scenario.seed,
            fidelity=inp.scenario.fidelity,
        )
    except Exception as e:  # a setting that crashes is reported, not fatal to the sweep
        return {"scenario": task.scenario, "policy": task.policy, "knobs": knobs, "error": f"{type(e).__name__}: {e}"}
    row = dict(res.summary)
    row["scenario"] = task.scenario
    return row


def plan(
    scenarios: Sequence[str],
    policies: Sequence[str],
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    fixed_knobs: dict[str, dict[str, Any]] | None = None,
) -> list[SweepTask]:
    tasks: list[SweepTask] = []
    for sc in scenarios:
        ov = (overrides or {}).get(sc, {})
        spec = _inputs(sc, ov).spec
        for pol in policies:
            if pol not in registry.POLICIES:
                raise ValueError(f"policies: unknown policy {pol!r} (expected one of {', '.join(registry.names())})")
            for knobs in knob_grid(pol, spec):
                tasks.append(SweepTask(sc, pol, knobs, ov, (fixed_knobs or {}).get(pol, {})))
    # longest first keeps both workers busy to the end
    slow = {"predictive": 0, "kpa": 1, "phpa": 2}
    tasks.sort(key=lambda t: slow.get(t.policy, 9))
    return tasks


def run_sweep(
    tasks: Sequence[SweepTask], *, jobs: int = 2, on_done: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if jobs <= 1:
        for t in tasks:
            rows.append(run_task(t))
            if on_done:
                on_done(rows[-1])
        return rows
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_task, t) for t in tasks]
        for f in as_completed(futures):
            rows.append(f.result())
            if on_done:
                on_done(rows[-1])
    return rows


REFINE_POINTS = 2  # settings tried between the two grid neighbours that straddle the SLO goal


def refine(tasks: Sequence[SweepTask], rows: Sequence[dict[str, Any]]) -> list[SweepTask]:
    """The second pass, the same for every policy: between the cheapest setting that meets the SLO
    goal and its grid neighbour (by knob value) that does not, try `REFINE_POINTS` evenly spaced
    settings. A coarse grid otherwise decides the result: one policy's passing setting can sit just
    past the goal while another's is far past it."""
    out: list[SweepTask] = []
    by_key: dict[tuple[str, str], list[SweepTask]] = {}
    for t in tasks:
        if len(t.knobs) == 1:
            by_key.setdefault((t.scenario, t.policy), []).append(t)
    for (sc, pol), ts in sorted(by_key.items()):
        (name,) = ts[0].knobs
        runs = {  # the settings of this one knob alone (not combined with others)
            float(r["knobs"][name]): r
            for r in rows
            if r["scenario"] == sc and r["policy"] == pol and "error" not in r and set(r.get("knobs", {})) == {name}
        }
        values = sorted(runs)
        passing = [v for v in values if runs[v]["meets_slo"]]
        if not passing or len(passing) == len(values):
            continue
        best = min(passing, key=lambda v: runs[v]["replica_hours"])
        i = values.index(best)
        failing = [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values) and not runs[values[j]]["meets_slo"]]
        if not failing:
            continue
        # the failing neighbour on the cheaper side: the one whose replica-hours are lower
        other = min(failing, key=lambda v: runs[v]["replica_hours"])
        base = ts[0]
        digits = 4 if isinstance(base.knobs[name], float) else 0
        for k in range(1, REFINE_POINTS + 1):
            v = best + (other - best) * k / (REFINE_POINTS + 1)
            value: Any = round(v, digits) if digits else round(v)
            if float(value) in runs:
                continue
            out.append(SweepTask(sc, pol, {name: value}, base.overrides, base.fixed_knobs))
    return out


def best_by_policy(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (scenario, policy): the cheapest setting meeting the SLO goal, and its × oracle."""
    out: list[dict[str, Any]] = []
    scenarios = sorted({r["scenario"] for r in rows})
    for sc in scenarios:
        mine = [r for r in rows if r["scenario"] == sc and "error" not in r]
        oracle = min((r["replica_hours"] for r in mine if r["policy"] == "oracle" and r["meets_slo"]), default=math.nan)
        for pol in sorted({r["policy"] for r in rows if r["scenario"] == sc}):
            runs = [r for r in mine if r["policy"] == pol]
            ok = [r for r in runs if r["meets_slo"]]
            best = min(ok, key=lambda r: r["replica_hours"]) if ok else None
            closest = max(runs, key=lambda r: r["slo_attainment"]) if runs else None
            out.append(
                {
                    "scenario": sc,
                    "policy": pol,
                    "settings_tried": len(runs),
                    "settings_meeting_slo": len(ok),
                    "best_knobs": best["knobs"] if best else None,
                    "best_replica_hours": best["replica_hours"] if best else None,
                    "best_attainment": best["slo_attainment"] if best else None,
                    "x_oracle": (best["replica_hours"] / oracle) if best and oracle == oracle else None,
                    "best_attainment_reached": closest["slo_attainment"] if closest else None,
                    "errors": [r["error"] for r in rows if r["scenario"] == sc and r["policy"] == pol and "error" in r],
                }
            )
    return out
