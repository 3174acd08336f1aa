"""The demo's story: the packaged spec, time-dilated, and the packaged trace window, shaped to fit a run.

`tfserving-autoscaler demo` (`commands/demo.py`) drives the real daemon loop with what this module
prepares: the packaged demo spec (`autoscaler/data/demo-spec.yaml`, ResNet-50 on a T4) with its
service profile, batch timeout and SLO dilated so a laptop can drive several replicas (`demo_spec`),
and a window of the Azure LLM 2023 trace smoothed, compressed to the run's length and scaled to a
peak (`offered_load`), plus the pre-window load that warm-starts the forecaster. Both data files are
package data (`importlib.resources`); if they are missing it fails with `DemoDataError`, never a
made-up load.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.spec.types import Mode, ServingAutoscalerSpec

DEMO_SPEC = "demo-spec.yaml"  # in autoscaler/data/
DEMO_TRACE = "azure_llm2023_code_req_300-1300s.csv"  # in autoscaler/data/ (see its README.md)
# The story, in trace seconds: quiet, the burst that starts at 845 s, its tail, quiet again.
WINDOW_S = (790.0, 1030.0)
SMOOTH_TRACE_S = 90  # moving average over the trace's 1 s counts: waves, not single-second spikes
BASELINE = 0.1  # the quiet load, as a fraction of the peak
# The forecaster is warm-started with the trace before the window, as the daemon warm-starts from
# Prometheus history; this many trace seconds (compressed like the window).
HISTORY_TRACE_S = 360.0
# The spec's scale-down stabilization is meant for the default run; a shorter run compresses the
# trace more, so the window shrinks with it (it is a policy timescale matched to the load's).
DEFAULT_DURATION_S = 90.0
MIN_STABILIZATION_S = 5


class DemoDataError(RuntimeError):
    """The packaged demo data (or a file given instead) cannot be read."""


@contextlib.contextmanager
def _data_file(name: str) -> Iterator[Path]:
    ref = resources.files("autoscaler").joinpath("data", name)
    if not ref.is_file():
        raise DemoDataError(
            f"packaged demo data autoscaler/data/{name} is missing from this installation "
            "(reinstall tfserving-autoscaler, or pass --spec/--trace)"
        )
    with resources.as_file(ref) as path:
        yield path


def load_demo_spec(path: str | None) -> ServingAutoscalerSpec:
    """The packaged demo spec, or the first document of `path`."""
    from autoscaler.spec import SpecError, load_spec
    from autoscaler.spec.parse import parse_specs_text

    try:
        if path is not None:
            return load_spec(Path(path))
        with _data_file(DEMO_SPEC) as p:
            return parse_specs_text(p.read_text(encoding="utf-8"), f"autoscaler/data/{DEMO_SPEC}")[0]
    except (OSError, SpecError) as exc:
        raise DemoDataError(f"demo spec: {exc}") from exc


def demo_spec(base: ServingAutoscalerSpec, args: argparse.Namespace) -> ServingAutoscalerSpec:
    """Dilate service time, batch timeout and SLO by `--dilation`; apply the command-line overrides."""
    k = float(args.dilation)
    profile = replace(base.profile, batch_latency_ms=tuple(x * k for x in base.profile.batch_latency_ms))
    initial = replace(base.batching.initial, batch_timeout_us=int(base.batching.initial.batch_timeout_us * k))
    prov = base.provisioning
    if args.period_s is not None:
        prov = replace(prov, decision_period_s=float(args.period_s))
    startup = base.startup
    if args.startup_s is not None:
        s = float(args.startup_s)
        startup = replace(startup, scheduling_s=0.1 * s, image_pull_s=0.3 * s, model_load_s=0.4 * s, warmup_s=0.2 * s)
    behavior = base.behavior
    if args.duration_s < DEFAULT_DURATION_S:
        down = behavior.scale_down
        window_s = max(MIN_STABILIZATION_S, round(down.stabilization_window_s * args.duration_s / DEFAULT_DURATION_S))
        behavior = replace(
            behavior, scale_down=replace(down, stabilization_window_s=min(window_s, down.stabilization_window_s))
        )
    return replace(
        base,
        mode=Mode.DIRECT,  # the local cluster is the Deployment; nothing else scales it
        behavior=behavior,
        max_replicas=int(args.max_replicas) if args.max_replicas is not None else base.max_replicas,
        slo=replace(base.slo, latency_ms=base.slo.latency_ms * k),
        profile=profile,
        batching=replace(base.batching, tune=False, initial=initial),
        provisioning=prov,
        startup=replace(startup, jitter_cv=0.0),
        outputs=replace(base.outputs, decisions_path=args.decisions),
    )


def offered_load(
    args: argparse.Namespace, peak_rps: float, duration_s: int
) -> tuple[list[float], list[float], str, float]:
    """Per-second offered load: the trace window, smoothed, compressed to fit the run, scaled to `peak_rps`.

    Returns (rates for the run, the same shaping applied to the `HISTORY_TRACE_S` before the window
    for the forecaster's warm start, where it comes from, compression in trace seconds per demo second).
    """
    from autoscaler.sim.traces import resolve_trace
    from autoscaler.sim.workload import load_trace

    w0, w1 = float(args.trace_start_s), float(args.trace_end_s)
    if not (0.0 <= w0 < w1):
        raise DemoDataError(f"trace window: expected 0 <= --trace-start-s < --trace-end-s (got {w0:g}, {w1:g})")
    pad = float(SMOOTH_TRACE_S)
    h0 = max(0.0, w0 - HISTORY_TRACE_S)
    start = max(0.0, h0 - pad)
    with contextlib.ExitStack() as stack:
        path = resolve_trace(args.trace) if args.trace else stack.enter_context(_data_file(DEMO_TRACE))
        try:
            whole = load_trace(path).timestamps_s  # a per-request file must span the window
            trace = load_trace(path, start_s=start, duration_s=w1 + pad - start)
        except (OSError, ValueError) as exc:
            raise DemoDataError(f"demo trace: {exc}") from exc
        if whole is not None and (len(whole) == 0 or whole[0] > h0 or whole[-1] < w1):
            span = f"{whole[0]:.0f}-{whole[-1]:.0f} s" if len(whole) else "no requests"
            raise DemoDataError(
                f"demo trace {path.name} covers {span}, not the window {w0:g}-{w1:g} s "
                f"and the {w0 - h0:g} s of history before it"
            )
    per_s = np.nan_to_num(trace.rate_per_second())
    smooth = np.convolve(per_s, np.ones(SMOOTH_TRACE_S) / SMOOTH_TRACE_S, mode="same")
    compression = float(args.compression) if args.compression else (w1 - w0) / duration_s
    n_hist = int((w0 - h0) / compression)
    edges = (w0 - start) + np.arange(-n_hist, duration_s + 1) * compression
    idx = np.clip(edges.astype(np.int64), 0, len(smooth) - 1)
    shape = np.array([smooth[a : max(b, a + 1)].mean() for a, b in zip(idx[:-1], idx[1:], strict=True)])
    top = float(shape[n_hist:].max()) or 1.0
    rate = peak_rps * (BASELINE + (1.0 - BASELINE) * shape / top)
    where = (
        f"{trace.name} (Azure LLM inference 2023, CC-BY-4.0) seconds {w0:g}-{w1:g}, "
        f"{SMOOTH_TRACE_S} s moving average, compressed {compression:.2g}x"
    )
    return [float(x) for x in rate[n_hist:]], [float(x) for x in rate[:n_hist]], where, compression


def history_fetcher(history_rps: list[float]) -> Any:
    """The loop's warm-start hook: the pre-window load, averaged to the forecaster's step."""

    def fetch(spec: ServingAutoscalerSpec, now_s: float) -> Any:
        step = max(1, int(spec.forecaster.step_s))
        h = np.asarray(history_rps, dtype=np.float64)
        h = h[len(h) % step :]
        return h.reshape(-1, step).mean(axis=1) if len(h) else h

    return fetch


def arrivals(rate_rps: list[float], seed: int) -> Any:
    rng = np.random.default_rng(seed)
    out = []
    for i, lam in enumerate(rate_rps):
        n = rng.poisson(lam)
        out.append(np.sort(i + rng.uniform(0.0, 1.0, n)))
    return np.concatenate(out) if out else np.zeros(0)
