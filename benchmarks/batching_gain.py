"""Per-GPU gain of tuned batching over the seed article's static batching, for every shipped profile.

The seed article runs TF Serving with one static batching file (max_batch_size 32,
batch_timeout_micros 1000; the other two knobs at our defaults, num_batch_threads 4 and
max_enqueued_batches 100). For each shipped spec (examples/*.yaml and the demo spec), this measures
with our capacity model (`CapacityModel.capacity_at_slo_rps`, exact tail) the per-replica
throughput at the spec's SLO with the seed's parameters and with the parameters our tuner picks
inside the spec's bounds (`core.batching.best_params`), and the ratio. One replica is one GPU in
every shipped spec, so the ratio is the per-GPU gain. It also gives the replicas needed for a
reference load (10x the seed's per-replica capacity, with the spec's headroom) both ways.

The demo spec is listed at its undilated profile (the demo multiplies service time and SLO by the
same factor, which leaves the ratio unchanged). Deterministic: no randomness, no timing.

Run: PYTHONPATH=$PWD .venv/bin/python benchmarks/batching_gain.py
Writes benchmarks/results/batching_gain.json and prints a table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoscaler.core.batching import best_params
from autoscaler.core.capacity import CapacityModel
from autoscaler.spec.parse import load_spec
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "batching_gain.json"
SEED = BatchingParams(max_batch_size=32, batch_timeout_us=1_000, num_batch_threads=4, max_enqueued_batches=100)
REFERENCE_LOAD_X = 10.0  # reference load, in seed per-replica capacities


def shipped_specs() -> list[Path]:
    return sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "autoscaler" / "data").glob("*spec*.yaml"))


def text(p: BatchingParams) -> str:
    return f"{p.max_batch_size} / {p.batch_timeout_us} µs / {p.num_batch_threads} thr"


def measure(path: Path, spec: ServingAutoscalerSpec) -> dict[str, Any]:
    model = CapacityModel(spec.profile)
    seed_rps = model.capacity_at_slo_rps(SEED, spec.slo)
    tuned, _ = best_params(model, spec.batching, spec.slo, SEED)
    tuned_rps = model.capacity_at_slo_rps(tuned, spec.slo)
    usable = 1.0 - spec.provisioning.headroom
    load_rps = REFERENCE_LOAD_X * seed_rps
    return {
        "spec": str(path.relative_to(ROOT)),
        "profile": spec.profile.source,
        "device_parallelism": spec.profile.device_parallelism,
        "slo": f"p{spec.slo.latency_quantile * 100:g} <= {spec.slo.latency_ms:g} ms",
        "seed_params": SEED.__dict__,
        "seed_rps": seed_rps,
        "tuned_params": tuned.__dict__,
        "tuned_rps": tuned_rps,
        "gain": tuned_rps / seed_rps if seed_rps > 0 else math.inf,
        "reference_load_rps": load_rps,
        "replicas_seed": math.ceil(load_rps / (seed_rps * usable)),
        "replicas_tuned": math.ceil(load_rps / (tuned_rps * usable)),
    }


def main() -> None:
    rows = [measure(p, load_spec(p)) for p in shipped_specs()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"seed": SEED.__dict__, "rows": rows}, indent=2) + "\n")
    table = Table(title="Tuned batching vs the seed's static batching (max_batch_size 32, timeout 1000 µs)")
    for col in ("spec", "profile", "SLO", "seed rps/GPU", "tuned (batch/timeout/threads)", "tuned rps/GPU", "gain",
                f"replicas @ {REFERENCE_LOAD_X:g}x seed"):  # fmt: skip
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["spec"],
            r["profile"],
            r["slo"],
            f"{r['seed_rps']:.0f}",
            text(BatchingParams(**r["tuned_params"])),
            f"{r['tuned_rps']:.0f}",
            f"{r['gain']:.2f}x",
            f"{r['replicas_seed']} -> {r['replicas_tuned']}",
        )
    Console(width=200).print(table)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
