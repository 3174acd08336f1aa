"""Several traces replayed onto one Deployment: the load of a multi-model TF Serving server.

Owns the `models:` list of a scenario file (one trace per model the Deployment serves, see
`sim/scenario.py`) and the trace arithmetic of putting them together:

    spec: ../examples/multimodel-t4.yaml     # target.models: resnet-fp32, resnet-amp
    models:
      - {model: resnet-fp32, trace: azure_functions2019_500fn_8h_http_only_60s.csv, start_s: 3600}
      - {model: resnet-amp, trace: nasa_http_jul95_60s.csv, start_s: 604800, rate_scale: 0.5}
    target_peak_replicas: 20                # the *combined* busiest second

Each model's trace window is read like a single scenario's (gap masking, superposition), scaled by
its `rate_scale` or, without one, to a mean rate proportional to the model's `share` in the spec
(so traces of very different size can be mixed as the spec says), and the per-second rates are
summed onto a 1 s grid over the windows' common length: one interval trace. Then the whole mix is
scaled like a single trace (`rate_scale` / `target_peak_replicas`, at the capacity of the mix).
The replay serves that sum with the spec's profile mixed at the models' realised mean shares
(`core/multimodel.py`): one fixed mix for the run, since the simulator serves one request stream.
Replaying a per-request trace this way turns its logged instants into a per-second Poisson rate.
A masked gap in any model's trace is a gap of the sum (unknown load stays unknown).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.sim.traces import Trace

MODEL_KEYS = ("model", "trace", "rate_scale", "superpose_s", "start_s")


@dataclass(frozen=True)
class ModelTrace:
    """One model's load: which trace, where its window starts, how it is scaled."""

    trace: str
    model: str | None = None  # a model of spec.target.models (None: the spec's only model)
    rate_scale: float | None = None  # None: scaled to the model's share of the spec
    superpose_s: float | None = None
    start_s: float = 0.0


def _positive(src: str, where: str, v: Any, *, allow_zero: bool = False) -> float | None:
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    if not ok or (float(v) < 0 if allow_zero else float(v) <= 0):
        raise ValueError(f"{src}: {where}: expected a number {'>= 0' if allow_zero else '> 0'} (got {v!r})")
    return float(v)


def parse_model_traces(src: str, value: object) -> tuple[ModelTrace, ...]:
    """The scenario's `models:` list; ValueError naming `models[i].<field>` and what was expected."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{src}: models: expected a non-empty list of {{model, trace, ...}} (got {value!r})")
    out = []
    for i, item in enumerate(value):
        where = f"models[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{src}: {where}: expected a mapping with model and trace (got {item!r})")
        unknown = sorted(set(item) - set(MODEL_KEYS))
        if unknown:
            raise ValueError(f"{src}: {where}.{unknown[0]}: unknown field (expected one of {', '.join(MODEL_KEYS)})")
        trace, model = item.get("trace"), item.get("model")
        if not isinstance(trace, str) or not trace:
            raise ValueError(f"{src}: {where}.trace: expected a trace name or path (got {trace!r})")
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"{src}: {where}.model: expected a model name of spec.target.models (got {model!r})")
        sup = _positive(src, f"{where}.superpose_s", item.get("superpose_s"))
        if sup is not None and sup < 1:
            raise ValueError(f"{src}: {where}.superpose_s: expected a number of seconds >= 1 (got {sup:g})")
        out.append(
            ModelTrace(
                trace=trace,
                model=model,
                rate_scale=_positive(src, f"{where}.rate_scale", item.get("rate_scale")),
                superpose_s=sup,
                start_s=_positive(src, f"{where}.start_s", item.get("start_s"), allow_zero=True) or 0.0,
            )
        )
    return tuple(out)


def mean_rate(per_s: FloatArray) -> float:
    """Mean requests/s over the known seconds (0 when none is known)."""
    known = per_s[~np.isnan(per_s)]
    return float(known.mean()) if len(known) else 0.0


def summed(per_s: Sequence[FloatArray], *, align_end: bool = False) -> FloatArray:
    """The per-second sum over the common length (from the start, or the last seconds with
    `align_end`, for histories that end where the windows begin); NaN where any part is NaN."""
    if not per_s:
        return np.zeros(0)
    n = min(len(x) for x in per_s)
    parts = [np.asarray(x[len(x) - n :] if align_end else x[:n], dtype=np.float64) for x in per_s]
    total: FloatArray = np.sum(parts, axis=0) if n else np.zeros(0)
    return total


def mixed_trace(name: str, source_path: Path, per_s: FloatArray, start_s: float) -> Trace:
    """An interval trace with 1 s steps holding `per_s` requests/s (after every scale)."""
    n = len(per_s)
    return Trace(
        name=name,
        source_path=source_path,
        step_s=1.0,
        t_s=np.arange(n, dtype=np.float64),
        counts=np.asarray(per_s, dtype=np.float64),
        timestamps_s=None,
        rate_scale=1.0,
        start_s=start_s,
        duration_s=float(n),
    )
