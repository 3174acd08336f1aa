"""PNG plots of a what-if comparison (matplotlib, Agg backend: no display needed).

Owns the pictures an operator looks at first: offered load against the capacity each policy
had ready, replicas over time, latency against the SLO, and cost against SLO attainment across
policies. Long replays are binned to about `MAX_POINTS` points per line (mean load, max
latency), so a 7-day, 1 s timeline plots in well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.types import FloatArray
from autoscaler.sim.engine import SimResult

MAX_POINTS = 1500


def _bin(x: FloatArray, how: str) -> tuple[FloatArray, int]:
    n = len(x)
    b = max(1, math.ceil(n / MAX_POINTS))
    m = (n // b) * b
    if m == 0:
        return x.copy(), 1
    v = x[:m].reshape(-1, b)
    with np.errstate(all="ignore"):
        out = np.nanmax(v, axis=1) if how == "max" else np.nanmean(v, axis=1)
    return out, b


def _hours(n_bins: int, b: int) -> FloatArray:
    return np.arange(n_bins) * b / 3600.0


def plot_all(results: Sequence[SimResult], out_dir: Path) -> list[Path]:
    """Write the four comparison PNGs into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if not results:
        return []
    paths = [
        _load_vs_capacity(results, out_dir / "load_vs_capacity.png"),
        _replicas(results, out_dir / "replicas.png"),
        _latency(results, out_dir / "latency.png"),
        _cost_vs_attainment(results, out_dir / "cost_vs_attainment.png"),
    ]
    return paths


def _load_vs_capacity(results: Sequence[SimResult], path: Path) -> Path:
    r0 = results[0]
    tl = r0.timeline
    w = tl.window()
    cap = CapacityModel(r0.spec.profile).capacity_at_slo_rps(r0.spec.batching.initial, r0.spec.slo)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    load, b = _bin(tl.arrivals[w], "mean")
    peak, _ = _bin(tl.arrivals[w], "max")
    hrs = _hours(len(load), b)
    ax.fill_between(hrs, load, peak, color="0.8", label="offered load (bin max)")
    ax.plot(hrs, load, color="black", lw=1.0, label="offered load (bin mean)")
    for r in results:
        ready, _ = _bin(r.timeline.ready[r.timeline.window()], "mean")
        ax.plot(hrs[: len(ready)], ready * cap, lw=0.9, label=f"{r.policy}: ready × capacity at SLO")
    ax.set_xlabel("hours")
    ax.set_ylabel("requests/s")
    ax.set_title(f"{r0.trace}: load vs capacity at the SLO ({cap:.0f} rps per replica)")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _replicas(results: Sequence[SimResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for r in results:
        tl = r.timeline
        pods, b = _bin(tl.pods[tl.window()], "mean")
        ax.plot(_hours(len(pods), b), pods, lw=0.9, label=f"{r.policy} ({r.summary['replica_hours']:.0f} replica-h)")
    ax.set_xlabel("hours")
    ax.set_ylabel("pods (pending + ready)")
    ax.set_title("replicas over time")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency(results: Sequence[SimResult], path: Path) -> Path:
    r0 = results[0]
    slo = r0.spec.slo
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for r in results:
        tl = r.timeline
        lat, b = _bin(np.nan_to_num(tl.latency_q_ms[tl.window()], nan=0.0, posinf=1e6), "max")
        ax.plot(_hours(len(lat), b), lat, lw=0.8, label=r.policy)
    ax.axhline(slo.latency_ms, color="red", ls="--", lw=1.0, label=f"SLO {slo.latency_ms:g} ms")
    ax.set_yscale("log")
    ax.set_ylim(1.0, max(10 * slo.latency_ms, 1000.0))
    ax.set_xlabel("hours")
    ax.set_ylabel(f"p{slo.latency_quantile * 100:g} latency per second, ms (bin max)")
    ax.set_title("latency vs SLO")
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cost_vs_attainment(results: Sequence[SimResult], path: Path) -> Path:
    goal = results[0].spec.slo.attainment
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in results:
        s = r.summary
        miss = max(1.0 - float(s["slo_attainment"]), 1e-7)
        ax.scatter([s["replica_hours"]], [miss], s=40)
        ax.annotate(r.policy, (s["replica_hours"], miss), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.axhline(1.0 - goal, color="red", ls="--", lw=1.0, label=f"goal: ≤ {(1 - goal) * 100:g} % misses")
    ax.set_yscale("log")
    ax.set_xlabel("replica-hours (cost)")
    ax.set_ylabel("fraction of requests missing the SLO (log)")
    ax.set_title("cost vs SLO misses (down-left is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
