"""PNG plots of a what-if comparison (matplotlib, Agg backend: no display needed).

Owns the pictures an operator looks at first: offered load against the capacity each policy
had ready, replicas over time, latency against the SLO, and cost against SLO attainment across
policies. Long replays are binned to about `MAX_POINTS` points per line (mean load, max
latency), so a 7-day, 1 s timeline plots in well under a second.

Readability rules, each because a real report broke it:

* every policy has a fixed colour, line style and marker (`POLICY_STYLES`), the same in every run
  and every plot; a policy not listed gets one derived from its name (crc32, not `hash()`, which
  changes per process);
* lines that coincide (hpa-rps, keda and phpa often do: the same HPA arithmetic on the same signal)
  are detected and share one legend entry, "hpa-rps ≈ keda ≈ phpa", drawn with distinct dashes;
  coinciding points in the cost plot share one label;
* the offered load is drawn last, on top;
* a policy that sits above 1.25× the reference peak (the busiest load bin, or the replicas it
  needs) for more than a fifth of the window — Knative's KPA oscillating between panic and stable
  mode is the usual one — gets its own panel with its own scale, so it does not set the axis
  every other line is read on; the main panel clips at the others' 99th percentile and says so.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.types import FloatArray
from autoscaler.sim.engine import SimResult

MAX_POINTS = 1500
COINCIDE_REL = 0.02  # mean |a - b| within 2 % of the plotted range: drawn as one line
OUTLIER_OVER_REF = 1.25  # above 1.25x the reference peak ...
OUTLIER_TIME_SHARE = 0.2  # ... for more than a fifth of the window: own panel


@dataclass(frozen=True)
class Style:
    color: str
    ls: Any  # a matplotlib line style: a name or (offset, (on, off, ...))
    marker: str
    lw: float = 1.1


POLICY_STYLES: dict[str, Style] = {
    "predictive": Style("#1f77b4", "-", "o", 1.6),
    "predictive-direct": Style("#17becf", (0, (5, 2)), "s", 1.3),
    "hpa-cpu": Style("#2ca02c", "-", "^"),
    "hpa-rps": Style("#d62728", "-", "v"),
    "keda": Style("#9467bd", (0, (4, 3)), "D"),
    "phpa": Style("#e377c2", (3, (1.5, 3.5)), "P", 1.4),
    "kpa": Style("#8c564b", "-", "X", 0.7),
    "static-peak": Style("#7f7f7f", "-.", "p"),
    "oracle": Style("#ff7f0e", "-", "h", 1.3),
}
_FALLBACK_COLORS = ("#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d")
_FALLBACK_LS: tuple[Any, ...] = ("-", (0, (5, 2)), (0, (1, 2)), "-.")


def style(policy: str) -> Style:
    """The policy's fixed style; unlisted policies get a stable one derived from the name."""
    if policy in POLICY_STYLES:
        return POLICY_STYLES[policy]
    h = zlib.crc32(policy.encode())
    return Style(_FALLBACK_COLORS[h % len(_FALLBACK_COLORS)], _FALLBACK_LS[(h >> 8) % len(_FALLBACK_LS)], "o")


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


def coinciding_groups(series: dict[str, FloatArray], scale: float) -> list[list[str]]:
    """Policies in drawing order, grouped where a series stays within COINCIDE_REL x scale (mean
    absolute difference) of the group's first one."""
    groups: list[list[str]] = []
    for name, ys in series.items():
        for g in groups:
            ref = series[g[0]]
            n = min(len(ref), len(ys))
            if n and float(np.nanmean(np.abs(ref[:n] - ys[:n]))) <= COINCIDE_REL * scale:
                g.append(name)
                break
        else:
            groups.append([name])
    return groups


def split_outliers(series: dict[str, FloatArray], ref_peak: float) -> tuple[list[str], list[str]]:
    """(main, own-panel) policies: own panel for those above OUTLIER_OVER_REF x ref_peak for more
    than OUTLIER_TIME_SHARE of the bins (never all of them: then there is nothing to separate)."""
    top = OUTLIER_OVER_REF * ref_peak
    out = [p for p, ys in series.items() if len(ys) and float(np.mean(np.nan_to_num(ys) > top)) > OUTLIER_TIME_SHARE]
    if len(out) == len(series):
        out = []
    return [p for p in series if p not in out], out


def _draw_lines(ax: Any, hrs: FloatArray, series: dict[str, FloatArray], labels: dict[str, str], scale: float) -> None:
    for group in coinciding_groups(series, scale):
        label = " ≈ ".join(labels[p] for p in group) + (" (lines coincide)" if len(group) > 1 else "")
        for i, p in enumerate(group):
            st = style(p)
            ys = series[p]
            ax.plot(hrs[: len(ys)], ys, color=st.color, ls=st.ls, lw=st.lw, label=label if i == 0 else None)


def _two_panels(series: dict[str, FloatArray], ref_peak: float) -> tuple[Any, list[Any], list[str], list[str]]:
    main, own = split_outliers(series, ref_peak)
    if own:
        fig, axes = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
        return fig, list(axes), main, own
    fig, ax = plt.subplots(figsize=(11, 4.5))
    return fig, [ax], main, own


def _clip_top(ax: Any, series: dict[str, FloatArray], floor: float) -> None:
    """Top of the main panel: the drawn lines' 99th percentile (brief spikes clipped), at least `floor`."""
    q = [float(np.nanpercentile(ys, 99)) for ys in series.values() if len(ys) and np.isfinite(ys).any()]
    top = 1.08 * max([floor, *q])
    highest = max([float(np.nanmax(ys)) for ys in series.values() if len(ys) and np.isfinite(ys).any()], default=0.0)
    ax.set_ylim(0.0, top)
    if highest > top:
        ax.text(
            0.995,
            0.98,
            f"clipped at {top:,.0f} (max {highest:,.0f})",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="0.35",
        )


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


def _offered_load(ax: Any, hrs: FloatArray, load: FloatArray, peak: FloatArray, *, legend: bool = True) -> None:
    ax.fill_between(hrs, load, peak, color="0.82", zorder=1, label="offered load (bin max)" if legend else None)
    ax.plot(hrs, load, color="black", lw=1.3, zorder=20, label="offered load (bin mean)" if legend else None)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _load_vs_capacity(results: Sequence[SimResult], path: Path) -> Path:
    r0 = results[0]
    tl = r0.timeline
    w = tl.window()
    cap = CapacityModel(r0.spec.profile).capacity_at_slo_rps(r0.spec.batching.initial, r0.spec.slo)
    load, b = _bin(tl.arrivals[w], "mean")
    peak, _ = _bin(tl.arrivals[w], "max")
    hrs = _hours(len(load), b)
    series = {r.policy: _bin(r.timeline.ready[r.timeline.window()], "mean")[0] * cap for r in results}
    ref_peak = float(np.nanmax(peak)) if len(peak) else 0.0
    fig, axes, main, own = _two_panels(series, ref_peak)
    labels = {p: p for p in series}
    _offered_load(axes[0], hrs, load, peak)
    _draw_lines(axes[0], hrs, {p: series[p] for p in main}, labels, max(ref_peak, 1.0))
    _clip_top(axes[0], {p: series[p] for p in main} | {"_load": peak}, ref_peak)
    axes[0].set_ylabel("requests/s")
    axes[0].set_title(f"{r0.trace}: load vs ready replicas × capacity at the SLO ({cap:.0f} rps per replica)")
    axes[0].legend(fontsize=7, ncol=2, loc="upper left")
    if own:
        _offered_load(axes[1], hrs, load, peak, legend=False)
        _draw_lines(axes[1], hrs, {p: series[p] for p in own}, labels, max(ref_peak, 1.0))
        axes[1].set_ylabel("requests/s")
        axes[1].set_title(
            f"own scale: {', '.join(own)} (above {OUTLIER_OVER_REF:g}× the peak load much of the time)", fontsize=9
        )
        axes[1].legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("hours")
    return _save(fig, path)


def _replicas(results: Sequence[SimResult], path: Path) -> Path:
    r0 = results[0]
    cap = CapacityModel(r0.spec.profile).capacity_at_slo_rps(r0.spec.batching.initial, r0.spec.slo)
    peak, b = _bin(r0.timeline.arrivals[r0.timeline.window()], "max")
    needed = float(np.nanmax(peak)) / cap if len(peak) and cap > 0 else 1.0
    series = {r.policy: _bin(r.timeline.pods[r.timeline.window()], "mean")[0] for r in results}
    hrs = _hours(max((len(s) for s in series.values()), default=0), b)
    labels = {r.policy: f"{r.policy} ({r.summary['replica_hours']:.0f} replica-h)" for r in results}
    fig, axes, main, own = _two_panels(series, needed)
    _draw_lines(axes[0], hrs, {p: series[p] for p in main}, labels, max(needed, 1.0))
    _clip_top(axes[0], {p: series[p] for p in main}, math.ceil(needed))
    axes[0].axhline(needed, color="black", lw=0.8, ls=":", zorder=20, label=f"peak load needs {needed:.1f}")
    axes[0].set_ylabel("pods (pending + ready)")
    axes[0].set_title("replicas over time")
    axes[0].legend(fontsize=7, ncol=2, loc="upper left")
    if own:
        _draw_lines(axes[1], hrs, {p: series[p] for p in own}, labels, max(needed, 1.0))
        axes[1].axhline(needed, color="black", lw=0.8, ls=":")
        axes[1].set_ylabel("pods")
        axes[1].set_title(f"own scale: {', '.join(own)}", fontsize=9)
        axes[1].legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("hours")
    return _save(fig, path)


def _latency(results: Sequence[SimResult], path: Path) -> Path:
    r0 = results[0]
    slo = r0.spec.slo
    series: dict[str, FloatArray] = {}
    b = 1
    for r in results:
        tl = r.timeline
        series[r.policy], b = _bin(np.nan_to_num(tl.latency_q_ms[tl.window()], nan=0.0, posinf=1e6), "max")
    hrs = _hours(max((len(s) for s in series.values()), default=0), b)
    # own panel: above the SLO for more than OUTLIER_TIME_SHARE of the bins
    fig, axes, main, own = _two_panels(series, slo.latency_ms / OUTLIER_OVER_REF)
    positive = np.concatenate([ys[ys > 0] for ys in series.values()] or [np.ones(1)])
    low = 10 ** math.floor(math.log10(max(float(np.percentile(positive, 1)) if len(positive) else 1.0, 0.1)))
    for ax, names in zip(axes, (main, own), strict=False):
        # coincidence judged on log latency: a 2 % band of three decades
        logs = {p: np.log10(np.maximum(series[p], 1e-3)) for p in names}
        for group in coinciding_groups(logs, 3.0):
            label = " ≈ ".join(group) + (" (lines coincide)" if len(group) > 1 else "")
            for i, p in enumerate(group):
                st = style(p)
                ys = series[p]
                ax.plot(hrs[: len(ys)], ys, color=st.color, ls=st.ls, lw=st.lw * 0.8, label=label if i == 0 else None)
        ax.axhline(slo.latency_ms, color="red", ls="--", lw=1.0, zorder=20, label=f"SLO {slo.latency_ms:g} ms")
        ax.set_yscale("log")
        ax.set_ylim(low, max(10 * slo.latency_ms, 1000.0))
        ax.legend(fontsize=7, ncol=3, loc="upper left")
    axes[0].set_ylabel(f"p{slo.latency_quantile * 100:g} latency per second, ms (bin max)")
    axes[0].set_title("latency vs SLO")
    if own:
        axes[1].set_ylabel("ms")
        axes[1].set_title(f"own panel: {', '.join(own)} (above the SLO much of the time)", fontsize=9)
    axes[-1].set_xlabel("hours")
    return _save(fig, path)


def cost_label_groups(points: dict[str, tuple[float, float]]) -> list[list[str]]:
    """Policies whose (replica-hours, miss fraction) points would overprint: within 1.5 % of the
    replica-hours span and 0.08 decades of misses of the group's first point."""
    xs = [x for x, _ in points.values()]
    span = max(max(xs) - min(xs), 1e-9) if xs else 1.0
    groups: list[list[str]] = []
    for p, (x, y) in points.items():
        for g in groups:
            x0, y0 = points[g[0]]
            if abs(x - x0) <= 0.015 * span and abs(math.log10(y) - math.log10(y0)) <= 0.08:
                g.append(p)
                break
        else:
            groups.append([p])
    return groups


def _cost_vs_attainment(results: Sequence[SimResult], path: Path) -> Path:
    goal = results[0].spec.slo.attainment
    fig, ax = plt.subplots(figsize=(8, 5.5))
    points = {
        r.policy: (float(r.summary["replica_hours"]), max(1.0 - float(r.summary["slo_attainment"]), 1e-7))
        for r in results
    }
    for p, (x, y) in points.items():
        st = style(p)
        ax.scatter([x], [y], s=46, color=st.color, marker=st.marker, zorder=3, edgecolors="white", linewidths=0.5)
    ax.axhline(1.0 - goal, color="red", ls="--", lw=1.0, label=f"goal: ≤ {(1 - goal) * 100:g} % misses")
    ax.set_yscale("log")
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel("replica-hours (cost)")
    ax.set_ylabel("fraction of requests missing the SLO (log)")
    ax.set_title("cost vs SLO misses (down-left is better)")
    ax.legend(fontsize=8, loc="lower left")
    # Labels: one per group of overprinting points; right-aligned in the right third (never clipped
    # at the edge); nudged down when they would sit on a label already placed.
    fig.canvas.draw()
    x_lo, x_hi = ax.get_xlim()
    placed: list[tuple[float, float]] = []  # display coordinates of placed labels
    for g in sorted(cost_label_groups(points), key=lambda g: points[g[0]][0]):
        x, y = points[g[0]]
        right = x > x_lo + 0.66 * (x_hi - x_lo)
        dx = -7.0 if right else 7.0
        px, py = ax.transData.transform((x, y))
        dy = 5.0
        while any(abs(px + dx - qx) < 90 and abs(py + dy - qy) < 11 for qx, qy in placed):
            dy -= 12.0
        placed.append((px + dx, py + dy))
        ax.annotate(
            ", ".join(g),
            (x, y),
            fontsize=8,
            xytext=(dx, dy),
            textcoords="offset points",
            ha="right" if right else "left",
            va="bottom",
            annotation_clip=False,
        )
    return _save(fig, path)
