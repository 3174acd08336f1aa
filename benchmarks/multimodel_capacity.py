"""Validation of the multi-model capacity model against a simulation of per-model queues on one GPU.

`core/multimodel.py` sizes a multi-model TF Serving pod as one request stream with the load-weighted
mix of the models' service times (device time adds up). The real server keeps one batch queue per
model (tensorflow_serving/batching/README.md, "Servers with Multiple Models, Model Versions or
Subtasks") and runs their batches one at a time on the device. This benchmark simulates exactly
that, request by request, and finds by bisection the largest pod rate at which the SLO quantile
holds over all the pod's requests, for several mixes of the T4 example's two models
(examples/multimodel-t4.yaml), and compares it with `capacity_at_slo_rps` on the mixed profile.

The simulation: each model's requests arrive as a Poisson stream at its share of the pod rate; a
model's batch opens with its first waiting request and is ready when it holds max_batch_size
requests or batch_timeout_micros after it opened; whenever the device is free it runs the ready
batch that became ready first (it waits for the first one to become ready), taking S_m(k).

Run: .venv/bin/python benchmarks/multimodel_capacity.py [--quick]
Writes benchmarks/results/multimodel_capacity.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.core.capacity import CapacityModel, ServiceTime
from autoscaler.core.multimodel import spec_for_mix
from autoscaler.spec import load_spec
from autoscaler.spec.types import BatchingParams, ServiceProfile

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "multimodel_capacity.json"
MIXES = ((1.0, 0.0), (0.9, 0.1), (0.6, 0.4), (0.4, 0.6), (0.1, 0.9), (0.0, 1.0))


def simulate(
    rate_rps: float,
    shares: tuple[float, ...],
    profiles: list[ServiceProfile],
    params: BatchingParams,
    n_requests: int,
    seed: int,
) -> np.ndarray:
    """Latencies (s) of every request of a pod serving `profiles` with one queue each on one device."""
    rng = np.random.default_rng(seed)
    horizon_s = n_requests / rate_rps
    arrivals = []
    for w in shares:
        n = rng.poisson(w * rate_rps * horizon_s) if w > 0 else 0
        arrivals.append(np.sort(rng.random(n) * horizon_s))
    svc = [ServiceTime(p).table_s(params.max_batch_size) for p in profiles]
    big_b, timeout_s = params.max_batch_size, params.batch_timeout_us / 1e6
    head = [0] * len(shares)  # first request not yet in a dispatched batch, per model
    out = [np.empty(len(a)) for a in arrivals]
    free_s = 0.0
    while True:
        best, best_ready = -1, np.inf
        for m, a in enumerate(arrivals):
            h = head[m]
            if h >= len(a):
                continue
            full_at = a[h + big_b - 1] if h + big_b - 1 < len(a) else np.inf
            ready = min(a[h] + timeout_s, full_at)
            if ready < best_ready:
                best, best_ready = m, ready
        if best < 0:
            break
        start = max(free_s, best_ready)
        a, h = arrivals[best], head[best]
        k = min(big_b, int(np.searchsorted(a, start, side="right")) - h)
        done = start + svc[best][k]
        out[best][h : h + k] = done - a[h : h + k]
        head[best] = h + k
        free_s = done
    return np.concatenate(out)


def des_capacity(
    shares: tuple[float, ...], profiles: list[ServiceProfile], params: BatchingParams, q: float, slo_s: float, n: int
) -> float:
    """Largest pod rate whose q-quantile latency is within `slo_s` (bisection, common random numbers)."""

    def ok(rate: float) -> bool:
        lat = simulate(rate, shares, profiles, params, n, seed=7)
        return float(np.mean(lat <= slo_s)) >= q

    top = 1.0 / sum(
        w * ServiceTime(p).s(params.max_batch_size) / params.max_batch_size
        for w, p in zip(shares, profiles, strict=True)
    )
    lo, hi = 0.0, top
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer requests per point (noisier)")
    args = ap.parse_args()
    n = 20_000 if args.quick else 100_000
    spec = load_spec(ROOT / "examples" / "multimodel-t4.yaml")
    names = spec.target.model_names
    profiles = [m.profile or spec.profile for m in spec.target.models]
    params, slo = spec.batching.initial, spec.slo
    rows: list[dict[str, Any]] = []
    for shares in MIXES:
        mixed = spec_for_mix(spec, dict(zip(names, shares, strict=True)))
        t0 = time.perf_counter()
        model = CapacityModel(mixed.profile).capacity_at_slo_rps(params, slo)
        t1 = time.perf_counter()
        des = des_capacity(shares, profiles, params, slo.latency_quantile, slo.latency_ms / 1e3, n)
        t2 = time.perf_counter()
        row = {
            "shares": dict(zip(names, shares, strict=True)),
            "model_rps": round(model, 1),
            "des_rps": round(des, 1),
            "error": round(model / des - 1.0, 4),
            "model_s": round(t1 - t0, 3),
            "des_s": round(t2 - t1, 2),
        }
        rows.append(row)
        print(f"{shares}: mixed model {model:7.1f} rps, per-model-queue DES {des:7.1f} rps, error {row['error']:+.1%}")
    doc = {
        "spec": "examples/multimodel-t4.yaml",
        "batching": {"max_batch_size": params.max_batch_size, "batch_timeout_us": params.batch_timeout_us},
        "slo": {"quantile": slo.latency_quantile, "latency_ms": slo.latency_ms},
        "requests_per_point": n,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
