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
value whatever the model or profile. Every grid also holds the policy's documented default (the
setting a team gets out of the box: HPA CPU 70 %, 100 requests/s per pod for hpa-rps, KEDA and
PHPA, Knative's 70 % of containerConcurrency, the spec's headroom), so "untuned" is always a row.

A grid is a guess; a policy must not be reported as never meeting the goal because its grid stopped
short. `extend` (between the grid and `refine`) makes the knob of every policy that met the goal at
no setting more conservative, one step per round (`CONSERVATIVE_STEP`: the load a replica is sized
for × 0.7, i.e. ~1.4× the replicas: lower targets, more headroom), until a setting meets the goal,
costs more replica-hours than static-peak (the fleet sized for the peak, which always meets it: a
policy that needs more is worse than not autoscaling), reaches the knob's limit or has taken
`MAX_EXTENSION_STEPS` steps. (Cost need not grow step by step: the KPA's limit cycle can make a
lower target cheaper, so a step that adds no replicas does not end the extension.) `best_by_policy`
says which of these ended it (`never_meets_reason`), so no "never meets" is a grid artefact.
`run_all` runs the three passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import engine
from autoscaler.sim.policies import registry
from autoscaler.sim.policies.kpa import default_target_concurrency
from autoscaler.sim.scenario import Inputs, load_inputs, load_scenario
from autoscaler.spec.types import ServingAutoscalerSpec

OURS = ("predictive", "predictive-direct")  # the same knob: headroom (and forecast quantile below 0)
RPS_FRACTIONS = (0.3, 0.45, 0.6, 0.75, 0.9)
PREDICTIVE_LEAN_QUANTILES = (0.5, 0.8)  # tried at headroom 0, below the spec's quantile
PREDICTIVE_LEAN_SURGE_SHARES = (1.0, 2.0)  # surge reserve budget shares above the default (0.5)
CONSERVATIVE_STEP = 0.7  # each extension step sizes replicas for 0.7 x the load of the step before
MAX_EXTENSION_STEPS = 8  # 0.7**8 = 6 % of the grid's most conservative load per replica


def default_knobs(policy: str, spec: ServingAutoscalerSpec) -> dict[str, Any]:
    """The documented default of `policy`'s main knob (what it runs with when no knob is given)."""
    if policy in ("hpa-rps", "phpa"):
        return {"target_rps_per_pod": 100.0}
    if policy == "keda":
        return {"threshold_rps": 100.0}
    if policy == "hpa-cpu":
        return {"target_utilization_pct": 70}
    if policy == "kpa":
        return {"target_concurrency": round(default_target_concurrency(spec), 2)}
    if policy in OURS:
        return {"headroom": spec.provisioning.headroom}
    return {}


def _with_default(name: str, values: list[Any], default: dict[str, Any]) -> list[dict[str, Any]]:
    return [{name: v} for v in sorted({*values, default[name]})]


def knob_grid(policy: str, spec: ServingAutoscalerSpec) -> list[dict[str, Any]]:
    """The settings of `policy`'s main knob to try, its default among them (a single default for
    the clairvoyant ones)."""
    cap = CapacityModel(spec.profile).capacity_at_slo_rps(spec.batching.initial, spec.slo)
    default = default_knobs(policy, spec)
    if policy in ("hpa-rps", "phpa"):
        return _with_default("target_rps_per_pod", [round(f * cap, 1) for f in RPS_FRACTIONS], default)
    if policy == "keda":
        return _with_default("threshold_rps", [round(f * cap, 1) for f in RPS_FRACTIONS], default)
    if policy == "hpa-cpu":
        return _with_default("target_utilization_pct", [25, 40, 55, 70, 85], default)
    if policy == "kpa":
        base = default_target_concurrency(spec)
        return _with_default("target_concurrency", [round(base * m, 2) for m in (0.35, 0.7, 1.4)], default)
    if policy in OURS:
        # "forecast quantile / headroom": headroom over the spec's forecast quantile, and below
        # headroom 0 (the least it can be) lower forecast quantiles
        lean = [{"forecast_quantile": q, "headroom": 0.0} for q in PREDICTIVE_LEAN_QUANTILES]
        # and below that, a surge reserve that leaves more of the miss allowance to surges
        leaner = [
            {"forecast_quantile": q, "headroom": 0.0, "surge_share": share}
            for share in PREDICTIVE_LEAN_SURGE_SHARES
            for q in PREDICTIVE_LEAN_QUANTILES
        ]
        return leaner + lean + _with_default("headroom", [0.0, 0.05, 0.15, 0.25, 0.35, 0.5], default)
    return [{}]


def more_conservative(policy: str, value: float) -> float | None:
    """The knob's next setting one `CONSERVATIVE_STEP` more conservative; None where it cannot go."""
    if policy == "hpa-cpu":
        pct = round(value * CONSERVATIVE_STEP)
        return pct if 1 <= pct < value else None
    if policy in ("hpa-rps", "phpa", "keda", "kpa"):
        nxt = round(value * CONSERVATIVE_STEP, 4)
        return nxt if 0 < nxt < value else None
    if policy in OURS:  # usable share of capacity (1 - headroom) x 0.7
        nxt = round(1.0 - (1.0 - value) * CONSERVATIVE_STEP, 4)
        return nxt if value < nxt < 1.0 else None
    return None


@dataclass(frozen=True)
class SweepTask:
    scenario: str
    policy: str
    knobs: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    fixed_knobs: dict[str, Any] = field(default_factory=dict)  # applied to every setting
    extension_step: int = 0  # 0: grid or refinement; k: the k-th step of `extend` past the grid


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
        err = f"{type(e).__name__}: {e}"
        return {"scenario": task.scenario, "policy": task.policy, "knobs": knobs, "error": err}
    row = dict(res.summary)
    row["scenario"] = task.scenario
    row["extension_step"] = task.extension_step
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
    slow = {"predictive": 0, "predictive-direct": 0, "kpa": 1, "phpa": 2}
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
    for (sc, pol), ts in sorted(_single_knob_tasks(tasks).items()):
        (name,) = ts[0].knobs
        runs = _single_knob_runs(rows, sc, pol, name)
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


def _single_knob_tasks(tasks: Sequence[SweepTask]) -> dict[tuple[str, str], list[SweepTask]]:
    by_key: dict[tuple[str, str], list[SweepTask]] = {}
    for t in tasks:
        if len(t.knobs) == 1:
            by_key.setdefault((t.scenario, t.policy), []).append(t)
    return by_key


def _single_knob_runs(rows: Sequence[dict[str, Any]], sc: str, pol: str, name: str) -> dict[float, dict[str, Any]]:
    """The runs of this one knob alone (not combined with others), by its value."""
    return {
        float(r["knobs"][name]): r
        for r in rows
        if r["scenario"] == sc and r["policy"] == pol and "error" not in r and set(r.get("knobs", {})) == {name}
    }


def _static_peak_rh(rows: Sequence[dict[str, Any]], sc: str) -> float | None:
    """Replica-hours of static-peak (the fleet sized for the peak) where it ran and met the goal."""
    rh = [
        r["replica_hours"] for r in rows if r["scenario"] == sc and r["policy"] == "static-peak" and r.get("meets_slo")
    ]
    return min(rh) if rh else None


def extension_stop(pol: str, runs: dict[float, dict[str, Any]], static_rh: float | None) -> str | None:
    """Why `extend` takes no further step for a policy that met the goal nowhere (None: it goes on)."""
    if not runs:
        return "its knob is not swept (one setting)"
    order = sorted(runs, reverse=pol not in OURS)  # least to most conservative
    last = runs[order[-1]]
    (name,) = last["knobs"]
    at = f"{name}={order[-1]:g}"
    if static_rh is not None and last["replica_hours"] > static_rh:
        return (
            f"costs more than static-peak before reaching the goal ({last['replica_hours']:.1f} vs "
            f"{static_rh:.1f} replica-h at {at}, {last['slo_attainment'] * 100:.3f} %)"
        )
    if int(last.get("extension_step", 0)) >= MAX_EXTENSION_STEPS:
        return f"{MAX_EXTENSION_STEPS} extension steps past the grid (at {at})"
    if more_conservative(pol, order[-1]) is None:
        return f"{name} is at its most conservative setting ({at})"
    return None


def extend(tasks: Sequence[SweepTask], rows: Sequence[dict[str, Any]]) -> list[SweepTask]:
    """One more conservative setting for each policy that met the goal at no setting yet (module
    docstring); empty when every policy met it or stopped. Call again after running the result."""
    out: list[SweepTask] = []
    for (sc, pol), ts in sorted(_single_knob_tasks(tasks).items()):
        (name,) = ts[0].knobs
        runs = _single_knob_runs(rows, sc, pol, name)
        if not runs or any(r["meets_slo"] for r in runs.values()):
            continue
        if extension_stop(pol, runs, _static_peak_rh(rows, sc)) is not None:
            continue
        last = max(runs) if pol in OURS else min(runs)
        nxt = more_conservative(pol, last)
        assert nxt is not None  # extension_stop checked it
        step = int(runs[last].get("extension_step", 0)) + 1
        out.append(SweepTask(sc, pol, {name: nxt}, ts[0].overrides, ts[0].fixed_knobs, extension_step=step))
    return out


def run_all(
    tasks: Sequence[SweepTask],
    *,
    jobs: int = 2,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    on_more: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """The grid, then `extend` rounds until no policy takes another step, then `refine`.
    `on_more(n)` is told when n more replays are planned."""
    rows = run_sweep(tasks, jobs=jobs, on_done=on_done)
    for _ in range(MAX_EXTENSION_STEPS):
        extra = extend(tasks, rows)
        if not extra:
            break
        if on_more:
            on_more(len(extra))
        rows += run_sweep(extra, jobs=jobs, on_done=on_done)
    extra = refine(tasks, rows)
    if on_more:
        on_more(len(extra))
    rows += run_sweep(extra, jobs=jobs, on_done=on_done)
    return rows


def best_by_policy(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (scenario, policy): the cheapest setting meeting the SLO goal, and its × oracle."""
    out: list[dict[str, Any]] = []
    scenarios = sorted({r["scenario"] for r in rows})
    for sc in scenarios:
        mine = [r for r in rows if r["scenario"] == sc and "error" not in r]
        # the oracle plans on steady-state tables; against a truth with backlog it can fall just short of
        # the goal: it stays the yardstick (its own attainment is reported beside every row)
        oracles = [r for r in mine if r["policy"] == "oracle"]
        meeting = [r for r in oracles if r["meets_slo"]] or oracles
        oracle = min((r["replica_hours"] for r in meeting), default=math.nan)
        oracle_attainment = max((r["slo_attainment"] for r in oracles), default=math.nan)
        for pol in sorted({r["policy"] for r in rows if r["scenario"] == sc}):
            runs = [r for r in mine if r["policy"] == pol]
            ok = [r for r in runs if r["meets_slo"]]
            best = min(ok, key=lambda r: r["replica_hours"]) if ok else None
            closest = max(runs, key=lambda r: r["slo_attainment"]) if runs else None
            reason = None
            if best is None and runs:
                knob = registry.policy_class(pol).knob
                reason = extension_stop(pol, _single_knob_runs(rows, sc, pol, knob), _static_peak_rh(rows, sc))
                reason = reason or "not extended past the grid"
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
                    "oracle_attainment": oracle_attainment,
                    "best_attainment_reached": closest["slo_attainment"] if closest else None,
                    "settings_extended": sum(1 for r in runs if r.get("extension_step", 0) > 0),
                    "never_meets_reason": reason,
                    "errors": [r["error"] for r in rows if r["scenario"] == sc and r["policy"] == pol and "error" in r],
                }
            )
    return out
