"""What-if scenario files (`simulations/*.yaml`): which trace, spec, window, scale and policies.

Owns the small YAML format that makes a comparison reproducible with one command
(`tfserving-autoscaler simulate simulations/<name>.yaml`), and loading its inputs: the trace
window, the per-second history before it (the forecasters' warm-up, as the daemon would fetch
from Prometheus) and the spec. Paths are resolved relative to the scenario file first, then the
repository root (installed: the package data, `sim/shipped.py`); traces may also be shipped trace
names. Errors name the file, the field and what was expected.

    name: nasa-1s-7d                   # default: the file's stem
    trace: nasa_http_jul95_1s.csv.gz   # shipped trace name or path
    spec: ../examples/resnet50-t4.yaml
    rate_scale: 300                    # or target_peak_replicas: 20 (scale so the busiest second
                                       #    needs that many replicas at the SLO capacity; for
                                       #    interval traces the busiest interval's rate; with
                                       #    superpose_s, the superposed series' busiest second)
    superpose_s: 60                    # scale by superposition over 60 s, not by duplicating
                                       #    requests (sparse 1 s traces; sim/workload.py)
    start_s: 604800                    # window start in the trace (default 0)
    duration_s: 604800                 # default: to the end of the trace
    history_s: 604800                  # history before the window for warm-up (default: the spec's
                                       #    forecaster.historySeconds, 14 d, as far as the trace
                                       #    reaches before start_s; the seasonal forecasters need two
                                       #    seasons, 2 d for a daily season, and forecast nothing in
                                       #    the first 10 min without any: summary.json says so)
    mask_gaps: true                    # logging gaps become missing data, not zero load
    fidelity: fluid                    # or request
    true_service_scale: 1.15           # the simulated replicas are 15 % slower than the spec's
                                       #    profile says (default 1; the policy reads the profile)
    seed: 0
    policies: [predictive, hpa-cpu]    # default: every registered policy
    knobs: {predictive: {headroom: 0.1}}
    models: [{model: a, trace: x.csv}, ...]   # instead of trace: one trace per model of a
                                       #    multi-model Deployment (sim/multitrace.py)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.multimodel import declared_shares, spec_for_mix
from autoscaler.core.types import FloatArray
from autoscaler.sim.engine import FIDELITIES
from autoscaler.sim.multitrace import ModelTrace, mean_rate, mixed_trace, parse_model_traces, summed
from autoscaler.sim.policies import registry
from autoscaler.sim.shipped import REPO_ROOT as REPO_ROOT  # re-exported: tests use it
from autoscaler.sim.shipped import SCENARIO_DIR as SCENARIO_DIR  # re-exported: tests use it
from autoscaler.sim.traces import Trace, resolve_trace
from autoscaler.sim.workload import load_trace
from autoscaler.spec import load_spec
from autoscaler.spec.types import ServingAutoscalerSpec

DEFAULT_SCENARIO = "azure-functions-8h"
DEFAULT_TARGET_PEAK_REPLICAS = 20.0  # without rate_scale or target_peak_replicas (at most maxReplicas)
KNOWN_KEYS = {
    "name",
    "description",
    "trace",
    "spec",
    "rate_scale",
    "target_peak_replicas",
    "superpose_s",
    "start_s",
    "duration_s",
    "history_s",
    "mask_gaps",
    "fidelity",
    "true_service_scale",
    "seed",
    "policies",
    "knobs",
    "models",
}


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Scenario:
    name: str
    trace: str
    spec_path: Path
    source: str = "<scenario>"
    description: str = ""
    rate_scale: float | None = None
    target_peak_replicas: float | None = None
    superpose_s: float | None = None  # None: scale by duplication; seconds: by superposition
    start_s: float = 0.0
    duration_s: float | None = None
    history_s: float | None = None
    mask_gaps: bool = True
    fidelity: str = "fluid"
    true_service_scale: float = 1.0  # the simulated replicas' speed relative to the spec's profile
    seed: int = 0
    policies: tuple[str, ...] = ()
    knobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: tuple[ModelTrace, ...] = ()  # several traces onto one Deployment (sim/multitrace.py)


@dataclass(frozen=True)
class Inputs:
    """Everything a replay needs, loaded from a scenario."""

    scenario: Scenario
    spec: ServingAutoscalerSpec
    trace: Trace
    history_rps: FloatArray
    rate_scale: float


def _resolve(p: str, base: Path | None) -> Path:
    cand = Path(p)
    if cand.is_absolute():
        return cand
    if base is not None and (base / cand).exists():
        return base / cand
    return SCENARIO_DIR.parent / cand  # the checkout's root, or autoscaler/data/ when installed


def find_scenario(name_or_path: str) -> Path:
    """A path as is, else `simulations/<name>.yaml`."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    q = SCENARIO_DIR / (name_or_path if name_or_path.endswith(".yaml") else f"{name_or_path}.yaml")
    if q.is_file():
        return q
    known = ", ".join(sorted(x.stem for x in SCENARIO_DIR.glob("*.yaml"))) or "(none)"
    raise ScenarioError(f"scenario {name_or_path!r}: no such file, and not a shipped scenario (shipped: {known})")


def _num(src: str, doc: dict[str, Any], key: str, *, positive: bool = False, integer: bool = False) -> Any:
    v = doc.get(key)
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    if ok and integer:
        ok = float(v).is_integer()
    if ok and (float(v) <= 0 if positive else float(v) < 0):
        ok = False
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = "> 0" if positive else ">= 0"
        raise ScenarioError(f"{src}: {key}: expected {kind} {bound} (got {v!r})")
    return int(v) if integer else float(v)


def parse_scenario(doc: object, source: str = "<scenario>", base: Path | None = None) -> Scenario:
    if not isinstance(doc, dict):
        raise ScenarioError(f"{source}: expected a YAML mapping at the top level (got {type(doc).__name__})")
    unknown = sorted(set(doc) - KNOWN_KEYS)
    if unknown:
        raise ScenarioError(f"{source}: {unknown[0]}: unknown field (expected one of {', '.join(sorted(KNOWN_KEYS))})")
    models: tuple[ModelTrace, ...] = ()
    if "models" in doc:  # one trace per model instead of `trace`
        if "trace" in doc:
            raise ScenarioError(f"{source}: trace: give either trace or models (one trace per model), not both")
        try:
            models = parse_model_traces(source, doc["models"])
        except ValueError as e:
            raise ScenarioError(str(e)) from None
        doc = {**doc, "trace": "+".join(m.trace for m in models)}
    for key in ("trace", "spec"):
        if not isinstance(doc.get(key), str) or not doc.get(key):
            raise ScenarioError(f"{source}: {key}: expected a file path or name (got {doc.get(key)!r})")
    rate_scale = _num(source, doc, "rate_scale", positive=True)
    peak = _num(source, doc, "target_peak_replicas", positive=True)
    if rate_scale is not None and peak is not None:
        raise ScenarioError(f"{source}: rate_scale: give either rate_scale or target_peak_replicas, not both")
    superpose_s = _num(source, doc, "superpose_s", positive=True)
    if superpose_s is not None and superpose_s < 1:
        raise ScenarioError(f"{source}: superpose_s: expected a number of seconds >= 1 (got {superpose_s:g})")
    fidelity = doc.get("fidelity", "fluid")
    if fidelity not in FIDELITIES:
        raise ScenarioError(f"{source}: fidelity: expected one of {', '.join(FIDELITIES)} (got {fidelity!r})")
    pols = doc.get("policies") or registry.names()
    if isinstance(pols, str):
        pols = [p.strip() for p in pols.split(",") if p.strip()]
    if not isinstance(pols, list) or not all(isinstance(p, str) for p in pols):
        raise ScenarioError(f"{source}: policies: expected a list of policy names (got {pols!r})")
    for p in pols:
        if p not in registry.POLICIES:
            raise ScenarioError(
                f"{source}: policies: unknown policy {p!r} (expected one of {', '.join(registry.names())})"
            )
    knobs = doc.get("knobs") or {}
    if not isinstance(knobs, dict) or not all(isinstance(v, dict) for v in knobs.values()):
        raise ScenarioError(f"{source}: knobs: expected a mapping policy -> {{knob: value}} (got {knobs!r})")
    for p in knobs:
        if p not in registry.POLICIES:
            raise ScenarioError(f"{source}: knobs.{p}: unknown policy (expected one of {', '.join(registry.names())})")
    mask = doc.get("mask_gaps", True)
    if not isinstance(mask, bool):
        raise ScenarioError(f"{source}: mask_gaps: expected true or false (got {mask!r})")
    name = doc.get("name") or (Path(source).stem if source != "<scenario>" else "scenario")
    return Scenario(
        name=str(name),
        description=str(doc.get("description", "")),
        trace=str(doc["trace"]),
        spec_path=_resolve(str(doc["spec"]), base),
        source=source,
        rate_scale=rate_scale,
        target_peak_replicas=peak,
        superpose_s=superpose_s,
        start_s=_num(source, doc, "start_s") or 0.0,
        duration_s=_num(source, doc, "duration_s", positive=True),
        history_s=_num(source, doc, "history_s"),
        mask_gaps=mask,
        fidelity=str(fidelity),
        true_service_scale=_num(source, doc, "true_service_scale", positive=True) or 1.0,
        seed=_num(source, doc, "seed", integer=True) or 0,
        policies=tuple(pols),
        knobs={str(k): dict(v) for k, v in knobs.items()},
        models=models,
    )


def load_scenario(path: str | Path) -> Scenario:
    p = find_scenario(str(path))
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ScenarioError(f"{p}: not valid YAML: {e}") from e
    return parse_scenario(doc, str(p), p.parent)


def _trace_path(sc: Scenario) -> Path:
    base = Path(sc.source).parent if sc.source != "<scenario>" else None
    cand = _resolve(sc.trace, base)
    try:
        return cand if cand.is_file() else resolve_trace(sc.trace)
    except FileNotFoundError as e:
        raise ScenarioError(f"{sc.source}: trace: {e}") from e


def peak_rps(rate_per_s: FloatArray) -> float:
    """The busiest second's offered load (for interval traces: the busiest interval's rate)."""
    r = np.nan_to_num(rate_per_s)
    return float(r.max()) if len(r) else 0.0


def _target_peak(sc: Scenario, spec: ServingAutoscalerSpec) -> float:
    """Replicas the busiest second should need: the scenario's, else 20 (at most maxReplicas).

    Above the spec's maxReplicas no policy could serve the peak (the HPA clamps to it), so every
    policy would miss the SLO for the trace's sake, not its own: an error, naming both numbers.
    """
    if sc.target_peak_replicas is None:
        return float(min(DEFAULT_TARGET_PEAK_REPLICAS, spec.max_replicas))
    if sc.target_peak_replicas > spec.max_replicas:
        raise ScenarioError(
            f"{sc.source}: target_peak_replicas (--target-peak-replicas): {sc.target_peak_replicas:g} is above the "
            f"spec's maxReplicas {spec.max_replicas} (expected at most {spec.max_replicas}: no policy may run more "
            "replicas than maxReplicas, so the peak could not be served)"
        )
    return sc.target_peak_replicas


def load_inputs(sc: Scenario, **overrides: Any) -> Inputs:
    """Load spec, trace window and history. `overrides` replace scenario fields (CLI flags)."""
    sc = replace(sc, **{k: v for k, v in overrides.items() if v is not None})
    if not sc.spec_path.is_file():
        raise ScenarioError(f"{sc.source}: spec: no such file {sc.spec_path}")
    spec = load_spec(sc.spec_path)
    if sc.models:
        return _load_mixed(sc, spec)
    path = _trace_path(sc)
    full = load_trace(path, mask_gaps=sc.mask_gaps, superpose_s=sc.superpose_s)
    step = full.step_s or 1.0
    end = full.start_s + full.duration_s
    if not (0 <= sc.start_s < end):
        raise ScenarioError(
            f"{sc.source}: start_s: expected a time in [0, {end:g}) s of the trace (got {sc.start_s:g})"
        )
    duration = sc.duration_s if sc.duration_s is not None else end - sc.start_s
    duration = min(duration, end - sc.start_s)
    scale = sc.rate_scale
    if scale is None:
        target = _target_peak(sc, spec)
        window = full.rate_per_second()[int(sc.start_s) : int(sc.start_s + duration)]
        peak = peak_rps(window)
        cap = CapacityModel(spec.profile).capacity_at_slo_rps(spec.batching.initial, spec.slo)
        scale = 1.0 if peak <= 0 or cap <= 0 else target * cap / peak
    mask, sup = sc.mask_gaps, sc.superpose_s
    trace = load_trace(path, rate_scale=scale, start_s=sc.start_s, duration_s=duration, mask_gaps=mask, superpose_s=sup)
    hist_s = sc.history_s if sc.history_s is not None else float(spec.forecaster.history_s)
    h_len = math.floor(min(hist_s, sc.start_s) / step) * step
    history = np.zeros(0)
    if h_len > 0:
        history = load_trace(
            path, rate_scale=scale, start_s=sc.start_s - h_len, duration_s=h_len, mask_gaps=mask, superpose_s=sup
        ).rate_per_second()
    return Inputs(scenario=sc, spec=spec, trace=trace, history_rps=history, rate_scale=scale)


def _load_mixed(sc: Scenario, spec: ServingAutoscalerSpec) -> Inputs:
    """Several traces onto one Deployment (sim/multitrace.py): each model's window scaled to its
    share, summed, then scaled as a whole; the spec mixed at the realised shares."""
    names = spec.target.model_names
    shares = dict(zip(names, declared_shares(spec.target.models), strict=True)) if spec.target.models else {}
    windows: list[FloatArray] = []
    histories: list[FloatArray] = []
    loads: dict[str, float] = {}
    for i, m in enumerate(sc.models):
        model = m.model if m.model is not None else (names[0] if len(names) == 1 else None)
        if model not in names:
            raise ScenarioError(
                f"{sc.source}: models[{i}].model: expected one of the spec's models {', '.join(names)} "
                f"(got {m.model!r})"
            )
        path = _trace_path(replace(sc, trace=m.trace))
        mask, sup = sc.mask_gaps, m.superpose_s
        full = load_trace(path, mask_gaps=mask, superpose_s=sup)
        end = full.start_s + full.duration_s
        if not 0 <= m.start_s < end:
            raise ScenarioError(
                f"{sc.source}: models[{i}].start_s: expected a time in [0, {end:g}) s (got {m.start_s:g})"
            )
        duration = min(sc.duration_s or end - m.start_s, end - m.start_s)
        per_s = load_trace(
            path, start_s=m.start_s, duration_s=duration, mask_gaps=mask, superpose_s=sup
        ).rate_per_second()
        mean = mean_rate(per_s)
        scale_m = m.rate_scale if m.rate_scale is not None else (shares.get(model, 1.0) / mean if mean > 0 else 1.0)
        windows.append(per_s * scale_m)
        loads[model] = loads.get(model, 0.0) + mean * scale_m
        step = full.step_s or 1.0
        hist_s = sc.history_s if sc.history_s is not None else float(spec.forecaster.history_s)
        h_len = math.floor(min(hist_s, m.start_s) / step) * step
        if h_len > 0:
            hist = load_trace(path, start_s=m.start_s - h_len, duration_s=h_len, mask_gaps=mask, superpose_s=sup)
            histories.append(hist.rate_per_second() * scale_m)
        else:
            histories.append(np.zeros(0))
    spec = spec_for_mix(spec, loads)
    combined = summed(windows)
    scale = sc.rate_scale
    if scale is None:
        target = _target_peak(sc, spec)
        peak = peak_rps(combined)
        cap = CapacityModel(spec.profile).capacity_at_slo_rps(spec.batching.initial, spec.slo)
        scale = 1.0 if peak <= 0 or cap <= 0 else target * cap / peak
    first = _trace_path(replace(sc, trace=sc.models[0].trace))
    trace = mixed_trace(sc.trace, first, combined * scale, sc.models[0].start_s)
    history = summed(histories, align_end=True) * scale
    return Inputs(scenario=sc, spec=spec, trace=trace, history_rps=history, rate_scale=scale)
