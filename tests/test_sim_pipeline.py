"""The metrics pipeline: Prometheus' rate(), and the lag between a load step and what policies see."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from autoscaler.sim import engine
from autoscaler.sim.pipeline import PipelineConfig, extrapolated_rate
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(name="t", target=TargetRef("ns", "d", "m"), min_replicas=1, max_replicas=20)


class Recorder:
    """A fixed-size fleet that records what it was shown."""

    name: ClassVar[str] = "recorder"
    knob: ClassVar[str] = "replicas"
    clairvoyant: ClassVar[bool] = False

    def __init__(self, replicas: int, period_s: float = 5.0) -> None:
        self.replicas = replicas
        self.period_s = period_s
        self.seen: list[tuple[float, float | None, float | None]] = []
        self.concurrency: list[float | None] = []

    def start(self, ctx: PolicyContext) -> None:
        self.start_s = ctx.start_s

    def decide(self, view: ClusterView) -> PolicyOutput:
        burst = view.observation.burst_rate_rps.value
        self.seen.append((view.now_s - self.start_s, view.total_rps, burst))
        self.concurrency.extend(p.concurrency for p in view.pods if p.ready)
        return PolicyOutput(self.replicas)


def test_extrapolated_rate_of_a_steady_counter_is_its_rate() -> None:
    # samples every 15 s at 10 rps, window 60 s ending 5 s after the last sample
    r = extrapolated_rate(first_t=10, last_t=55, n=4, delta=450.0, first_v=1000.0, range_start=0, range_end=60)
    assert abs(r - 10.0) < 1e-9
    # a counter that started inside the window is not extrapolated below zero
    r0 = extrapolated_rate(first_t=10, last_t=55, n=4, delta=450.0, first_v=0.0, range_start=0, range_end=60)
    assert r0 < 10.0


def test_a_load_step_reaches_total_rps_only_after_scrape_and_window() -> None:
    step_at = 600
    rate = np.where(np.arange(1200) < step_at, 100.0, 1000.0)
    cfg = PipelineConfig(scrape_interval_s=15, scrape_offset_s=7, rate_window_s=60)
    pol = Recorder(replicas=6)
    engine.run_rates(rate, SPEC, pol, pipeline=cfg)
    seen = {t: (tot, burst) for t, tot, burst in pol.seen}
    first_scrape_after = next(s for s in range(step_at, step_at + 16) if s % 15 == 7)
    for t, (tot, _) in seen.items():
        assert tot is not None
        if t <= first_scrape_after:
            assert abs(tot - 100.0) < 1.0, f"t={t}: the step is visible before any scrape saw it"
        if t >= first_scrape_after + cfg.rate_window_s + cfg.scrape_interval_s:
            assert abs(tot - 1000.0) < 10.0, f"t={t}: the window should be past the step"
    partial = [tot for t, (tot, _) in seen.items() if first_scrape_after < t < first_scrape_after + 60]
    assert partial and all(100.0 < x < 1000.0 for x in partial if x is not None)
    # queue-proxy style concurrency per pod: rate per pod x mean latency (Little's law), never 0 under load
    assert pol.concurrency and all(c is not None and c > 0 for c in pol.concurrency)
    per_pod_high = 1000.0 / 6
    assert max(c for c in pol.concurrency if c is not None) > per_pod_high * 0.005  # > 5 ms of latency
    # the burst signal (direct scrape) follows within its 10 s window
    bursts = {t: b for t, (_, b) in seen.items()}
    assert bursts[step_at + 10] is not None and abs(bursts[step_at + 10] - 1000.0) < 1.0
    assert bursts[step_at] is not None and abs(bursts[step_at] - 100.0) < 1.0
