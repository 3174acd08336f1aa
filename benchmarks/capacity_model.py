"""Benchmark and validation of the replica capacity model against the exact simulator.

Measures (1) the discrete-event simulator's speed in requests/s, (2) its M/D/c mean waiting
time against theory, (3) the analytic `capacity_at_slo_rps` against the capacity found by
bisection on the simulator over a grid of batching parameters and SLOs, (4) `fraction_within`
against the simulator around capacity, and (5) the analytic model's call costs. Prints rich
tables and writes benchmarks/results/capacity_model.json.

Run: .venv/bin/python benchmarks/capacity_model.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from autoscaler.core.batching import choose_batching
from autoscaler.core.batchqueue import simulate_replica
from autoscaler.core.cache import clear_all
from autoscaler.core.capacity import CapacityModel, ServiceTime
from autoscaler.spec.types import SLO, BatchingParams, BatchingSpec, ServiceProfile, ServingAutoscalerSpec, TargetRef

# Thread count = parallel servers here (a device that runs `num_batch_threads` batches at once), the
# setting these results were measured in; the product default for one GPU is device_parallelism=1,
# which tests/test_capacity.py validates separately.
PROFILE = ServiceProfile(device_parallelism=64)
SVC = ServiceTime(PROFILE)
RESULTS = Path(__file__).parent / "results" / "capacity_model.json"


def label(p: BatchingParams) -> str:
    return f"B={p.max_batch_size} T={p.batch_timeout_us}us c={p.num_batch_threads} q={p.max_enqueued_batches}"


def unit_arrivals(n: int, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0, n))


def mdc_mean_wait_s(rate: float, service_s: float, servers: int, states: int = 800) -> float:
    """Exact M/D/c mean wait from the embedded chain N(t+D) = (N(t)-c)^+ + A (Crommelin 1932)."""
    a = rate * service_s
    j = np.arange(states)
    pmf = np.exp(-a + j * math.log(a) - np.array([math.lgamma(x + 1.0) for x in j]))
    trans = np.zeros((states, states))
    for n in range(states):
        base = max(n - servers, 0)
        trans[n, base:] = pmf[: states - base]
        trans[n, -1] += 1.0 - pmf[: states - base].sum()
    system = trans.T - np.eye(states)
    system[-1, :] = 1.0
    rhs = np.zeros(states)
    rhs[-1] = 1.0
    pi = np.linalg.solve(system, rhs)
    return float((pi * np.maximum(j - servers, 0)).sum() / rate)


def bench_des_speed(n: int) -> list[dict[str, Any]]:
    rows = []
    unit = unit_arrivals(n, 1)
    for params, load in [
        (BatchingParams(1, 0, 1, 10**9), 0.7),
        (BatchingParams(1, 0, 4, 10**9), 0.7),
        (BatchingParams(32, 2_000, 4, 100), 0.3),
        (BatchingParams(32, 2_000, 4, 100), 0.9),
        (BatchingParams(8, 1_000, 2, 10), 1.3),
    ]:
        top = params.num_batch_threads * params.max_batch_size / SVC.s(params.max_batch_size)
        t0 = time.process_time()  # CPU time: wall time is noisy on a shared machine
        run = simulate_replica(unit / (load * top), params, SVC)
        dt = time.process_time() - t0
        rows.append(
            {"params": label(params), "load": load, "requests": n, "seconds": dt, "requests_per_s": n / dt,
             "mean_batch": float(run.batch_sizes.mean()), "rejected": float(run.rejected.mean())}
        )  # fmt: skip
    return rows


def bench_mdc(n: int) -> list[dict[str, Any]]:
    rows = []
    s1 = SVC.s(1)
    for servers in (1, 2, 4):
        for rho in (0.6, 0.8):
            rate = rho * servers / s1
            run = simulate_replica(unit_arrivals(n, servers) / rate, BatchingParams(1, 0, servers, 10**9), SVC)
            wait = float(run.latency_ms.mean()) / 1000.0 - s1
            theory = rho * s1 / (2 * (1 - rho)) if servers == 1 else mdc_mean_wait_s(rate, s1, servers)
            rows.append({"servers": servers, "rho": rho, "des_wait_ms": wait * 1e3, "theory_ms": theory * 1e3,
                         "rel_error": wait / theory - 1.0})  # fmt: skip
    return rows


def des_capacity(params: BatchingParams, slo: SLO, guess: float, unit: np.ndarray) -> float:
    top = params.num_batch_threads * params.max_batch_size / SVC.s(params.max_batch_size)

    def ok(rate: float) -> bool:
        return simulate_replica(unit / rate, params, SVC).latency_quantile_ms(slo.latency_quantile) <= slo.latency_ms

    # scan from low load so that a non-monotone latency curve is handled like the model does
    lo, hi = 0.0, top
    for i in range(1, 21):
        rate = top * i / 20
        if not ok(rate):
            hi = rate
            break
        lo = rate
    else:
        return top
    for _ in range(9):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return 0.5 * (lo + hi)


def bench_capacity(n: int, count: int) -> list[dict[str, Any]]:
    random.seed(5)
    space = [BatchingParams(b, t, c, 100) for b in (4, 8, 16, 32, 64) for t in (0, 1_000, 2_000, 5_000, 10_000)
             for c in (1, 2, 4, 8)]  # fmt: skip
    chosen = [BatchingParams(), *random.sample(space, count)]
    unit = unit_arrivals(n, 7)
    model = CapacityModel(PROFILE)
    rows = []
    for slo in (SLO(0.99, 100.0), SLO(0.99, 50.0), SLO(0.95, 100.0)):
        for params in chosen:
            analytic = model.capacity_at_slo_rps(params, slo)
            simulated = des_capacity(params, slo, analytic, unit)
            slo_text = f"p{slo.latency_quantile * 100:g}<={slo.latency_ms:g}ms"
            rows.append({"params": label(params), "slo": slo_text, "analytic_rps": analytic, "des_rps": simulated,
                         "rel_error": analytic / simulated - 1.0})  # fmt: skip
    return rows


def bench_fraction_within(n: int) -> list[dict[str, Any]]:
    model = CapacityModel(PROFILE)
    unit = unit_arrivals(n, 3)
    rows = []
    for params in (BatchingParams(), BatchingParams(8, 1_000, 2, 100), BatchingParams(64, 5_000, 4, 100),
                   BatchingParams(16, 2_000, 8, 10)):  # fmt: skip
        cap = model.capacity_at_slo_rps(params, SLO())
        for load in (0.5, 0.8, 0.9, 1.0, 1.05, 1.1, 1.2):
            rate = load * cap
            run = simulate_replica(unit / rate, params, SVC)
            rows.append({"params": label(params), "load_vs_capacity": load, "rate_rps": rate,
                         "des": run.fraction_within(100.0), "analytic": model.fraction_within(rate, params, 100.0),
                         "des_busy": run.busy_fraction,
                         "analytic_busy": model.busy_fraction(rate, params)})  # fmt: skip
    return rows


def bench_costs() -> dict[str, float]:
    params = BatchingParams()
    clear_all()  # equal models share their memos (`core/cache.py`): start cold
    model = CapacityModel(PROFILE)
    t0 = time.perf_counter()
    model.capacity_at_slo_rps(params, SLO())
    cold_capacity = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.capacity_at_slo_rps(params, SLO())
    warm_capacity = time.perf_counter() - t0
    model.fraction_within(100.0, params, 100.0)
    rates = np.random.default_rng(0).uniform(0, 1.3 * model.max_throughput_rps(params), 20_000)
    t0 = time.perf_counter()
    for r in rates:
        model.fraction_within(float(r), params, 100.0)
    per_call = (time.perf_counter() - t0) / len(rates)
    spec = ServingAutoscalerSpec(name="b", target=TargetRef("ns", "d", "m"), batching=BatchingSpec(tune=True))
    clear_all()
    t0 = time.perf_counter()
    choose_batching(CapacityModel(PROFILE), spec, 500.0, spec.batching.initial)
    choose_cold = time.perf_counter() - t0
    return {"capacity_at_slo_cold_s": cold_capacity, "capacity_at_slo_cached_s": warm_capacity,
            "fraction_within_cached_us": per_call * 1e6, "choose_batching_cold_s": choose_cold}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples and parameter sets")
    args = parser.parse_args()
    n_speed, n_mdc, n_cap, count = (200_000, 200_000, 40_000, 6) if args.quick else (1_000_000, 1_000_000, 100_000, 16)
    console = Console()
    out: dict[str, Any] = {}

    out["des_speed"] = bench_des_speed(n_speed)
    table = Table(title="Discrete-event simulator speed (requests per CPU-second)")
    for col in ("params", "load", "requests/s", "mean batch", "rejected"):
        table.add_column(col)
    for r in out["des_speed"]:
        table.add_row(r["params"], f"{r['load']:.2f}", f"{r['requests_per_s']:,.0f}", f"{r['mean_batch']:.2f}",
                      f"{r['rejected']:.3f}")  # fmt: skip
    console.print(table)

    out["mdc"] = bench_mdc(n_mdc)
    table = Table(title="M/D/c mean wait: simulator vs theory (B=1, no timeout)")
    for col in ("c", "rho", "DES ms", "theory ms", "error"):
        table.add_column(col)
    for r in out["mdc"]:
        table.add_row(str(r["servers"]), f"{r['rho']}", f"{r['des_wait_ms']:.3f}", f"{r['theory_ms']:.3f}",
                      f"{r['rel_error']:+.2%}")  # fmt: skip
    console.print(table)

    out["capacity"] = bench_capacity(n_cap, count)
    errors = np.array([r["rel_error"] for r in out["capacity"]])
    table = Table(title="capacity_at_slo_rps: analytic vs simulator")
    for col in ("params", "SLO", "analytic rps", "DES rps", "error"):
        table.add_column(col)
    for r in out["capacity"]:
        table.add_row(r["params"], r["slo"], f"{r['analytic_rps']:.0f}",
                      f"{r['des_rps']:.0f}", f"{r['rel_error']:+.1%}")  # fmt: skip
    console.print(table)
    out["capacity_summary"] = {
        "n": len(errors), "mean_error": float(errors.mean()), "mean_abs_error": float(np.abs(errors).mean()),
        "median_abs_error": float(np.median(np.abs(errors))), "max_abs_error": float(np.abs(errors).max()),
        "within_10pct": int((np.abs(errors) <= 0.10).sum()),
    }  # fmt: skip
    console.print(out["capacity_summary"])

    out["fraction_within"] = bench_fraction_within(n_cap * 2)
    table = Table(title="fraction within 100 ms: analytic vs simulator")
    for col in ("params", "load/capacity", "DES", "analytic", "busy DES", "busy analytic"):
        table.add_column(col)
    for r in out["fraction_within"]:
        table.add_row(r["params"], f"{r['load_vs_capacity']:.2f}", f"{r['des']:.4f}",
                      f"{r['analytic']:.4f}", f"{r['des_busy']:.3f}", f"{r['analytic_busy']:.3f}")  # fmt: skip
    console.print(table)

    out["costs"] = bench_costs()
    console.print(out["costs"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
