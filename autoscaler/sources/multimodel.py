"""Signals of a multi-model TF Serving server, combined into one Observation per Deployment.

Owns how the per-model signals of `spec.target.models` add up to the Deployment the autoscaler
sizes, for every source (Prometheus and the direct scrape build one Observation per model as for
a single-model target, then `combine` them):

* rates (OK, errors, rejected, burst) add up. A model without a `request_count` series counts as
  0 when another model of the server has one: TF Serving creates a model's counter at its first
  request, and the other models' series show the server is scraped. A failure of any model's
  signal (ERROR, STALE, NAN) is kept: a sum with a missing part is not a measurement.
* latency at the SLO quantile is the *worst* model's: the SLO holds for every model's requests,
  and the pooled quantile (which a load-weighted mean would approximate) lets a small model miss
  its SLO unseen; the worst per-model quantile bounds the pooled one from above, so it is the safe
  side for scaling. Models without a request in the window (NaN quantile) are left out.
* SLO attainment is the request-weighted mean of the models' attainments: exactly the fraction of
  all the Deployment's requests within the SLO latency.
* the batch queue and GPU series carry no `model_name` (TF Serving's batching_session metrics are
  labelled by thread pool only, and one `--batching_parameters_file` serves every model), so the
  queue wait, batch size and GPU busy fraction are per pod, averaged over the Deployment's pods
  (`pod_means`); replicas and cold start are per Deployment already.
* `model_rates_rps`: each model's offered load (OK + rejected), the mix `core/multimodel.py` shares
  the pod's capacity by.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from autoscaler.core.types import Observation, Signal, SignalStatus

_RATES = ("request_rate_rps", "error_rate_rps", "rejected_rps", "burst_rate_rps")


def _first_failure(sigs: Sequence[Signal], skip: tuple[SignalStatus, ...]) -> Signal | None:
    return next((s for s in sigs if not s.ok and s.status not in skip), None)


def sum_rates(sigs: Sequence[Signal], names: Sequence[str]) -> Signal:
    """The summed rate; models with no series (MISSING) are 0 when another model has one."""
    failed = _first_failure(sigs, (SignalStatus.MISSING,))
    if failed is not None:
        return failed
    ok = [s for s in sigs if s.ok and s.value is not None]
    if not ok:
        return sigs[0] if sigs else Signal.missing(SignalStatus.MISSING, "no model")
    absent = [n for n, s in zip(names, sigs, strict=True) if not s.ok]
    note = f"sum of {len(names)} models" + (f" ({', '.join(absent)}: no series yet, 0)" if absent else "")
    return Signal.of(math.fsum(s.value for s in ok if s.value is not None), note)


def worst_latency(sigs: Sequence[Signal], names: Sequence[str]) -> Signal:
    """The highest per-model latency quantile among models with requests in the window."""
    ok = [(s.value, n) for s, n in zip(sigs, names, strict=True) if s.ok and s.value is not None]
    if not ok:
        failed = _first_failure(sigs, ())
        return failed if failed is not None else Signal.missing(SignalStatus.MISSING, "no model")
    value, name = max(ok)
    return Signal.of(value, f"worst of {len(names)} models: {name}")


def weighted_attainment(sigs: Sequence[Signal], weights: Sequence[float]) -> Signal:
    """Request-weighted mean attainment over the models with an attainment and requests."""
    pairs = [(s.value, w) for s, w in zip(sigs, weights, strict=True) if s.ok and s.value is not None and w > 0]
    total = math.fsum(w for _, w in pairs)
    if total <= 0:
        failed = _first_failure(sigs, ())
        return failed if failed is not None else Signal.missing(SignalStatus.MISSING, "no request in the window")
    return Signal.of(math.fsum(v * w for v, w in pairs) / total, f"request-weighted over {len(pairs)} models")


def combine(per_model: Mapping[str, Observation], deployment: Observation) -> Observation:
    """One Observation for the Deployment from its models' (see the module docstring).

    `deployment` supplies what is not per model: queue wait, batch size, GPU busy fraction,
    replicas and cold start (per pod or per Deployment)."""
    names = list(per_model)
    obs = list(per_model.values())
    rates = {f: sum_rates([getattr(o, f) for o in obs], names) for f in _RATES}
    served = [o.request_rate_rps.value if o.request_rate_rps.ok and o.request_rate_rps.value else 0.0 for o in obs]
    offered = []
    for n, o in zip(names, obs, strict=True):
        a = o.arrival_rps
        offered.append((n, a.value if a.ok and a.value is not None else 0.0))
    return replace(
        deployment,
        request_rate_rps=rates["request_rate_rps"],
        error_rate_rps=rates["error_rate_rps"],
        rejected_rps=rates["rejected_rps"],
        burst_rate_rps=rates["burst_rate_rps"],
        latency_ms=worst_latency([o.latency_ms for o in obs], names),
        slo_attainment=weighted_attainment([o.slo_attainment for o in obs], served),
        model_rates_rps=tuple(offered),
    )


def pod_means(
    sums: Mapping[str, float], counts: Mapping[str, float], pods: Sequence[str], what: str, scale: float = 1.0
) -> Signal:
    """Σ sum-rate / Σ count-rate over `pods` (a histogram's mean over the Deployment), × `scale`."""
    s = math.fsum(sums.get(p, 0.0) for p in pods if math.isfinite(sums.get(p, 0.0)))
    c = math.fsum(counts.get(p, 0.0) for p in pods if math.isfinite(counts.get(p, 0.0)))
    seen = [p for p in pods if p in counts]
    if not seen:
        return Signal.missing(SignalStatus.MISSING, f"no {what} series for the Deployment's pods")
    if c <= 0:
        return Signal.missing(SignalStatus.NAN, f"no {what} sample in the window (0/0)")
    return Signal.of(s / c * scale, f"mean over {len(seen)} pods")


def pod_average(values: Mapping[str, float], pods: Sequence[str], what: str) -> Signal:
    """The mean of a per-pod gauge (GPU busy fraction) over the Deployment's pods that report it."""
    vals = [values[p] for p in pods if p in values and math.isfinite(values[p])]
    if not vals:
        return Signal.missing(SignalStatus.MISSING, f"no {what} series for the Deployment's pods")
    return Signal.of(math.fsum(vals) / len(vals), f"mean over {len(vals)} pods")
