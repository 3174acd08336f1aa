"""Several models on one TF Serving server: how they share the pod's one device.

Owns turning a multi-model Deployment (`spec.target.models`) into the single-stream spec the
decision core already understands, so `decide()` stays pure and unchanged, and a single-model
spec goes through untouched (the same object: results stay bit-identical).

Model. A TF Serving server with several models in its `model_config_list` and
`--enable_batching` gives every model its own batch queue in one shared batch scheduler, and the
batches of all queues run on the same device (tensorflow_serving/batching/README.md, "Servers with
Multiple Models, Model Versions or Subtasks"; one `--batching_parameters_file`, so every queue has
the same `max_batch_size` and `batch_timeout_micros`). The device executes one batch at a time
(`ServiceProfile.device_parallelism` = 1 on a GPU), so the first-order, defensible model is that
device time adds up:

    utilisation = Σ_m rate_m × S_m(b_m) / b_m

with S_m the measured service time of a batch of b_m requests of model m. A Deployment whose
models receive shares w_m of its load λ therefore uses λ × Σ_m w_m S_m(b)/b of device time per
second when the batches are of size b, which is exactly the per-request device time of one stream
whose batch of b takes the *load-weighted mean* service time S_mix(b) = Σ_m w_m S_m(b). So the
pod's capacity at the SLO is the existing capacity model (`core/capacity.py`) run on the mixed
profile S_mix; `decide()` then divides the summed load by it. Limits of the first model: each
queue fills its own batches, so a model with a small share forms smaller batches than the mixed
stream would (its S_m(b)/b is higher): the mixture is optimistic; against a request-level simulation of
one queue per model on one GPU (benchmarks/multimodel_capacity.py) the T4 example's capacity at the
SLO is 4.0-4.9 % too high from 90/10 to 10/90 and within 1.1 % for one model, inside the default
10 % headroom (and the live calibration of service times corrects it). Shares come from the
observed per-model request rates each tick (`Observation.model_rates_rps`), else the spec's declared `share`s, and are
rounded to `SHARE_STEP` so the capacity model's caches (per profile) stay few.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from autoscaler.core.capacity import ServiceTime
from autoscaler.spec.types import ServedModel, ServiceProfile, ServingAutoscalerSpec

SHARE_STEP = 0.02  # shares are rounded to 2 %: at most 51 mixed profiles for two models


def is_multi_model(spec: ServingAutoscalerSpec) -> bool:
    """True when the spec's capacity depends on a mix of models (several, or one with its own profile)."""
    models = spec.target.models
    return len(models) > 1 or (len(models) == 1 and models[0].profile is not None)


def model_profiles(spec: ServingAutoscalerSpec) -> tuple[tuple[str, ServiceProfile], ...]:
    """(model name, its service profile) for every served model; the spec's profile by default."""
    if not spec.target.models:
        return ((spec.target.model_name, spec.profile),)
    return tuple((m.name, m.profile if m.profile is not None else spec.profile) for m in spec.target.models)


def declared_shares(models: Sequence[ServedModel]) -> tuple[float, ...]:
    """The spec's shares: declared ones as given, the rest split what is left equally; normalised."""
    given = sum(m.share for m in models if m.share is not None)
    free = [m for m in models if m.share is None]
    rest = max(0.0, 1.0 - given) / len(free) if free else 0.0
    raw = [m.share if m.share is not None else rest for m in models]
    total = sum(raw)
    if total <= 0:
        return tuple(1.0 / len(models) for _ in models)
    return tuple(x / total for x in raw)


def observed_shares(names: Sequence[str], rates_rps: Mapping[str, float]) -> tuple[float, ...] | None:
    """Each model's fraction of the observed load; None unless every rate is finite and ≥ 0 and some
    model has load (a model without a series counts as 0: TF Serving creates a model's request
    counter at its first request)."""
    vals = [rates_rps.get(n, 0.0) for n in names]
    if any(not math.isfinite(v) or v < 0 for v in vals):
        return None
    total = sum(vals)
    return None if total <= 0 else tuple(v / total for v in vals)


def quantized(shares: Sequence[float], step: float = SHARE_STEP) -> tuple[float, ...]:
    """Shares rounded to multiples of `step` that still add up to 1 (largest remainder)."""
    units = round(1.0 / step)
    raw = [s * units for s in shares]
    floor = [math.floor(x) for x in raw]
    left = units - sum(floor)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - floor[i]), i))
    for i in order[:left]:
        floor[i] += 1
    return tuple(f / units for f in floor)


def device_utilisation(
    rates_rps: Sequence[float], profiles: Sequence[ServiceProfile], batch_sizes: Sequence[float]
) -> float:
    """Busy fraction of the one device: Σ rate_m × S_m(b_m) / b_m (device seconds per second)."""
    if not len(rates_rps) == len(profiles) == len(batch_sizes):
        raise ValueError(
            f"rates_rps, profiles, batch_sizes: expected one per model (got {len(rates_rps)}, {len(profiles)}, "
            f"{len(batch_sizes)})"
        )
    return sum(r * ServiceTime(p).s(b) / b for r, p, b in zip(rates_rps, profiles, batch_sizes, strict=True) if r > 0)


def mixed_profile(
    profiles: Sequence[ServiceProfile], shares: Sequence[float], base: ServiceProfile, names: Sequence[str] = ()
) -> ServiceProfile:
    """The profile of one request stream that uses the device like the mix: S_mix(b) = Σ w_m S_m(b).

    Batch sizes are the union of the models' measured sizes (each model interpolated between its
    own, `ServiceTime`); host CPU per request is load-weighted; the pod's CPU request and device
    parallelism are the Deployment's (`base`)."""
    times = [ServiceTime(p) for p in profiles]
    sizes = sorted({b for p in profiles for b in p.batch_sizes})
    lat = tuple(sum(w * t.ms(b) for w, t in zip(shares, times, strict=True) if w > 0) for b in sizes)
    labels = names or [p.source or f"model {i}" for i, p in enumerate(profiles)]
    mix = " + ".join(f"{w:.0%} {n}" for w, n in zip(shares, labels, strict=True) if w > 0)
    return ServiceProfile(
        batch_sizes=tuple(sizes),
        batch_latency_ms=lat,
        cpu_ms_per_request=sum(w * p.cpu_ms_per_request for w, p in zip(shares, profiles, strict=True)),
        cpu_request_millicores=base.cpu_request_millicores,
        device_parallelism=base.device_parallelism,
        source=f"mix: {mix}",
    )


def spec_for_mix(
    spec: ServingAutoscalerSpec, model_rates_rps: Mapping[str, float] | Sequence[tuple[str, float]] = ()
) -> ServingAutoscalerSpec:
    """The spec whose `profile` is the current model mix's (see the module docstring).

    A single-model spec is returned as is. Otherwise shares are the observed per-model rates when
    usable, else the declared ones, rounded to `SHARE_STEP`; the result names every model's profile
    and share explicitly, so mixing it again without observations gives the same spec."""
    if not is_multi_model(spec):
        return spec
    pairs = model_profiles(spec)
    names = [n for n, _ in pairs]
    rates = dict(model_rates_rps)
    shares = (observed_shares(names, rates) if rates else None) or declared_shares(spec.target.models)
    q = quantized(shares)
    profiles = [p for _, p in pairs]
    models = tuple(ServedModel(n, w, p) for (n, p), w in zip(pairs, q, strict=True))
    return replace(
        spec, profile=mixed_profile(profiles, q, spec.profile, names), target=replace(spec.target, models=models)
    )
