"""Writes a what-if comparison to disk: summary.json, per-policy timelines, plots, report.html.

Owns the output format operators and CI read (docs/design.md "The simulator"):

* `DIR/summary.json`: a list, one object per policy — policy, trace, requests, slo_ms,
  slo_quantile, slo_attainment (fraction of requests served within slo_ms; rejected count as
  misses), p50/p95/p99_ms, rejected, replica_hours (pods that exist, Pending included: that is
  what a GPU node costs), scale_events, mean_gpu_util, wall_s, meets_slo, knobs (as given),
  settings (as resolved, defaults included: the report's column), x_oracle;
  `gap_policy` ("bridged+excluded": masked logging gaps are served at load bridged across them,
  missing to the policies' metrics, and left out of every scored number), `gap_seconds`,
  `gap_requests`, `gap_replica_hours` (what was left out); `history_s` (history before the window
  that warmed the forecasters) and `history_note` (says so when there was none);
* `DIR/<policy>/timeline.csv`: one row per second of the replay window;
* `DIR/*.png` (sim/plots.py) and a self-contained `DIR/report.html` with the PNGs inlined, opening
  with a verdict sentence (`verdict()`): which deployable policy met the attainment goal cheapest and
  by how much, or that none did and which came closest.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.sim.engine import SimResult
from autoscaler.sim.policies import registry
from autoscaler.sim.timeline import CSV_COLUMNS

SUMMARY_KEYS = (
    "policy",
    "mode",
    "trace",
    "requests",
    "slo_ms",
    "slo_quantile",
    "slo_attainment",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "rejected",
    "replica_hours",
    "scale_events",
    "mean_gpu_util",
    "wall_s",
    "meets_slo",
    "knobs",
    "settings",
    "gap_policy",
    "gap_seconds",
    "gap_requests",
    "gap_replica_hours",
    "history_s",
    "history_note",
)
NO_HISTORY_NOTE = (
    "no history before the window: forecasting policies start cold (no forecast until 10 minutes of the "
    "window are seen; a daemon would read weeks of Prometheus history)"
)


def history_note(history_s: float, season_s: float = 86_400.0) -> str:
    """What the forecasters had before the window, in words (summary.json and report.html)."""
    if history_s <= 0:
        return NO_HISTORY_NOTE
    if history_s < 2 * season_s:
        return (
            f"{history_s / 3600:.1f} h of history before the window, under the two seasons "
            f"({2 * season_s / 86400:g} d) a seasonal forecaster needs: a short-history model until then"
        )
    return f"{history_s / 86400:.1f} days of history before the window warmed the forecasters"


def _history_note(r: SimResult) -> str:
    return history_note(float(r.summary.get("history_s", 0.0)), float(r.spec.forecaster.season_length_s))


def gap_note(summary: dict[str, Any]) -> str:
    """How masked trace gaps were replayed, in words."""
    n = int(summary.get("gap_seconds", 0))
    if n == 0:
        return "no masked logging gap in the window"
    return (
        f"{n:,} s of masked logging gaps ({summary.get('gap_policy')}): load bridged linearly across them, "
        "missing to the policies' metrics, left out of attainment, latency, rejected and replica-hours "
        f"({int(summary.get('gap_requests', 0)):,} bridged requests not scored)"
    )


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (np.floating, np.integer)):
        return _json_safe(v.item())
    return v


def summary_rows(results: Sequence[SimResult]) -> list[dict[str, Any]]:
    """Summary objects, with `x_oracle` (replica-hours relative to the oracle) when it ran."""
    oracle = next((r for r in results if r.policy == "oracle"), None)
    base = float(oracle.summary["replica_hours"]) if oracle is not None else None
    rows: list[dict[str, Any]] = []
    for r in results:
        row = dict(r.summary)
        row["x_oracle"] = (float(row["replica_hours"]) / base) if base else None
        row["history_note"] = _history_note(r)
        rows.append(row)
    return rows


def write_summary(results: Sequence[SimResult], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "summary.json"
    rows = [_json_safe(row) for row in summary_rows(results)]
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path


def write_timeline(result: SimResult, path: Path) -> Path:
    """Per-second CSV of the replay window (t_s = seconds since the window start)."""
    tl = result.timeline
    w = tl.window()
    cols = {
        "arrivals": tl.arrivals,
        "served": tl.served,
        "rejected": tl.rejected,
        "within_slo": tl.within_slo,
        "ready_replicas": tl.ready,
        "pods": tl.pods,
        "desired_replicas": tl.desired,
        "latency_slo_q_ms": tl.latency_q_ms,
        "p50_ms": tl.p50_ms,
        "p99_ms": tl.p99_ms,
        "gpu_util": tl.busy,
        "mean_batch": tl.mean_batch,
        "forecast_rps": tl.forecast,
        "forecast_lo_rps": tl.forecast_lo,
        "forecast_hi_rps": tl.forecast_hi,
    }
    data = np.column_stack([np.arange(tl.n_s, dtype=np.float64)] + [cols[c][w] for c in CSV_COLUMNS])
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ",".join(("t_s", *CSV_COLUMNS))
    np.savetxt(path, data, delimiter=",", header=header, comments="", fmt="%.6g")
    return path


def write_report(results: Sequence[SimResult], out_dir: Path, *, timelines: bool = True, plots: bool = True) -> Path:
    """Write everything; returns the summary.json path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = write_summary(results, out_dir)
    if timelines:
        for r in results:
            write_timeline(r, out_dir / r.policy / "timeline.csv")
    pngs: list[Path] = []
    if plots:
        from autoscaler.sim.plots import plot_all

        pngs = plot_all(results, out_dir)
    write_html(results, pngs, out_dir / "report.html")
    return summary


TIE_REL = 1.01  # policies within 1 % of the cheapest one's replica-hours are named as ties, not "next"


def _clairvoyant(policy: str) -> bool:
    try:
        return bool(registry.policy_class(policy).clairvoyant)
    except ValueError:  # not a registered policy (a test's instance): judged as deployable
        return False


def verdict(rows: Sequence[dict[str, Any]], goal: float) -> str:
    """One sentence: the cheapest policy that runs without knowing the future and met the goal, and
    its margin over the next one that did (and over hindsight policies); or that none met it."""
    if not rows:
        return "No policy was replayed."
    goal_txt = f"{goal * 100:g} %"
    causal = [r for r in rows if not _clairvoyant(str(r["policy"]))]
    met = sorted((r for r in causal if r["meets_slo"]), key=lambda r: float(r["replica_hours"]))

    def rh(r: dict[str, Any]) -> str:
        return f"{float(r['replica_hours']):,.1f} replica-hours"

    def x_oracle(r: dict[str, Any]) -> str:
        return f", {float(r['x_oracle']):.2f}× the oracle" if r.get("x_oracle") else ""

    if met:
        best = met[0]
        out = f"{best['policy']} met the {goal_txt} attainment goal cheapest: {rh(best)}{x_oracle(best)}"
        best_rh = float(best["replica_hours"])
        ties = [r for r in met[1:] if float(r["replica_hours"]) <= TIE_REL * best_rh]
        rest = met[1 + len(ties) :]
        if ties:
            out += f" (within {(TIE_REL - 1) * 100:g} %: {', '.join(str(r['policy']) for r in ties)})"
        if rest:
            nxt = rest[0]
            saved = 1.0 - best_rh / float(nxt["replica_hours"])
            out += f", {saved * 100:.0f} % less than the next that met it ({nxt['policy']}, {rh(nxt)})"
        elif not ties:
            out += "; no other policy that runs without knowing the future met it"
        return out + "."
    if not causal:
        return f"Only hindsight policies were replayed; none is deployable as is (goal {goal_txt})."
    close = max(causal, key=lambda r: float(r["slo_attainment"]))
    out = (
        f"No policy that runs without knowing the future met the {goal_txt} goal; the closest was "
        f"{close['policy']} at {float(close['slo_attainment']) * 100:.2f} % ({rh(close)})"
    )
    hind = sorted((r for r in rows if r["meets_slo"] and _clairvoyant(str(r["policy"]))), key=lambda r: r["policy"])
    if hind:
        out += "; with hindsight: " + ", ".join(f"{r['policy']} {rh(r)}" for r in hind)
    return out + "."


def _settings(row: dict[str, Any]) -> str:
    used = row.get("settings") or row.get("knobs") or {}
    parts = []
    for k, v in used.items():
        txt = f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        parts.append(f"{k}={txt}")
    return html.escape(", ".join(parts)) if parts else "–"


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "∞" if v > 0 else "–"
        return f"{v:,.{digits}f}"
    return html.escape(str(v))


def write_html(results: Sequence[SimResult], pngs: Sequence[Path], path: Path) -> Path:
    rows = summary_rows(results)
    r0 = results[0] if results else None
    title = f"What-if: {r0.trace}" if r0 else "What-if"
    head = (
        "<tr><th>policy</th><th>SLO attainment</th><th>meets goal</th><th>p50 ms</th><th>p95 ms</th>"
        "<th>p99 ms</th><th>rejected</th><th>replica-hours</th><th>× oracle</th><th>scale events</th>"
        "<th>GPU util</th><th>settings used</th></tr>"
    )
    body = []
    for row in rows:
        body.append(
            "<tr>"
            f"<td>{_fmt(row['policy'])}</td><td>{row['slo_attainment'] * 100:.3f} %</td>"
            f"<td>{_fmt(bool(row['meets_slo']))}</td><td>{_fmt(row['p50_ms'])}</td><td>{_fmt(row['p95_ms'])}</td>"
            f"<td>{_fmt(row['p99_ms'])}</td><td>{row['rejected']:,}</td><td>{_fmt(row['replica_hours'])}</td>"
            f"<td>{_fmt(row['x_oracle'], 2)}</td><td>{row['scale_events']}</td>"
            f"<td>{row['mean_gpu_util'] * 100:.0f} %</td><td>{_settings(row)}</td>"
            "</tr>"
        )
    imgs = []
    for p in pngs:
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        imgs.append(
            f'<h2>{html.escape(p.stem.replace("_", " "))}</h2><img alt="{p.stem}" src="data:image/png;base64,{b64}">'
        )
    spec_line = ""
    if r0 is not None:
        slo = r0.spec.slo
        spec_line = (
            f"<p class='verdict'><b>{html.escape(verdict(rows, slo.attainment))}</b></p>"
            f"<p>SLO: p{slo.latency_quantile * 100:g} ≤ {slo.latency_ms:g} ms, attainment goal "
            f"{slo.attainment * 100:g} % of requests within {slo.latency_ms:g} ms (rejected = miss). "
            f"Fidelity: {html.escape(r0.fidelity)}; {r0.timeline.n_s:,} s replayed from t = {r0.timeline.start_s:g} s; "
            f"{int(r0.summary['requests']):,} requests. Replica-hours count Pending pods too.</p>"
            f"<p>History: {html.escape(_history_note(r0))}. "
            f"Gaps: {html.escape(gap_note(r0.summary))}.</p>"
        )
    doc = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
        "td:first-child{text-align:left}td:last-child{text-align:left;font-size:85%}img{max-width:100%}"
        ".verdict{font-size:115%}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{spec_line}<table>{head}{''.join(body)}</table>{''.join(imgs)}"
        "</body></html>\n"
    )
    path.write_text(doc)
    return path
