"""The metrics pipeline: Prometheus' rate(), and the lag between a load step and what policies see."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import engine
from autoscaler.sim.cluster import Cluster, Pod
from autoscaler.sim.fluid import rate_table
from autoscaler.sim.pipeline import MetricsPipeline, PipelineConfig, extrapolated_rate
from autoscaler.sim.timeline import Timeline
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec, TargetRef

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
    assert partial and all(100.0 < x < 1000.0 * (1 + 1e-12) for x in partial if x is not None)  # (rounding)
    # queue-proxy style concurrency per pod: rate per pod x mean latency (Little's law), never 0 under load
    assert pol.concurrency and all(c is not None and c > 0 for c in pol.concurrency)
    per_pod_high = 1000.0 / 6
    assert max(c for c in pol.concurrency if c is not None) > per_pod_high * 0.005  # > 5 ms of latency
    # the burst signal (direct scrape) follows within its 10 s window
    bursts = {t: b for t, (_, b) in seen.items()}
    assert bursts[step_at + 10] is not None and abs(bursts[step_at + 10] - 1000.0) < 1.0
    assert bursts[step_at] is not None and abs(bursts[step_at] - 100.0) < 1.0


def reference_pod_rate(pipe: MetricsPipeline, tl: Timeline, pod: Pod, now_s: int, scrapes: list[int]) -> float | None:
    """The plain algorithm the pipeline's cached path must reproduce: the pod's scraped counter
    values in the window, then Prometheus' extrapolated rate() over its first and last sample."""
    samples = [(t, v) for t in scrapes if (v := pipe._counter(tl, pod, t)) is not None]
    if len(samples) < 2:
        return None
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    w = pipe.config.rate_window_s
    r = extrapolated_rate(t0, t1, len(samples), v1 - v0, v0, now_s - w, now_s)
    return None if math.isnan(r) else r


def test_cached_counter_stats_and_view_rates_equal_the_scalar_pod_rate() -> None:
    rng = np.random.default_rng(7)
    pipe = MetricsPipeline(SPEC, lambda p: rate_table(CapacityModel(SPEC.profile), p, SPEC.slo))
    tl = Timeline(preroll_s=180, n_s=900, start_s=0.0)
    tl.served[:] = rng.uniform(0.0, 50.0, tl.size) * (rng.random(tl.size) > 0.1)
    tl.ready[:] = rng.integers(1, 6, tl.size)
    tl.close(0, tl.size)
    checked = 0
    for now_s in sorted(rng.integers(-150, 900, 60).tolist()):
        scrapes = [s for s in pipe.scrapes_in(now_s - 60, now_s, 15, 7) if tl.index(s) >= 0]
        for _ in range(30):
            ready_s = int(rng.integers(-180, now_s + 30))
            deleted_s = None if rng.random() < 0.5 else float(rng.integers(ready_s, now_s + 30))
            pod = Pod(1, float(ready_s - 20), ready_s, SPEC.batching.initial, deleted_s)
            want = reference_pod_rate(pipe, tl, pod, now_s, scrapes)
            st = pipe.counter_stats(tl, ready_s, deleted_s, scrapes)
            got = None if st is None else extrapolated_rate(*st, now_s - 60, now_s)
            assert got == want, (now_s, ready_s, deleted_s)
            checked += want is not None
    assert checked > 100
    # build_view: every ready pod's rps and total_rps as the reference computation finds them
    for now_s in (-20, 130, 400, 401, 767):
        cluster = Cluster(SPEC.startup, SPEC.batching.initial, initial_replicas=0, seed=0)
        for i in range(40):
            ready_s = int(rng.integers(-180, now_s + 30))
            pod = Pod(i + 1, float(ready_s - 20), ready_s, SPEC.batching.initial)
            if rng.random() < 0.3 and ready_s < now_s:
                pod.deleted_s = float(rng.integers(max(ready_s, now_s - 59), now_s + 1))
                cluster.deleted.append(pod)
            else:
                cluster.pods.append(pod)
        view = pipe.build_view(tl, cluster, now_s)
        scrapes = [s for s in pipe.scrapes_in(now_s - 60, now_s, 15, 7) if tl.index(s) >= 0]
        i0, i1 = tl.index(scrapes[0]), tl.index(scrapes[-1])
        d = float(tl.cum_share[i1] - tl.cum_share[i0])
        shared = extrapolated_rate(scrapes[0], scrapes[-1], len(scrapes), d, math.inf, now_s - 60, now_s)
        steady = {p.pod_id for p in cluster.pods if p.ready_s <= now_s - 120}
        want = {
            p.pod_id: shared if p.pod_id in steady else reference_pod_rate(pipe, tl, p, now_s, scrapes)
            for p in (*cluster.pods, *cluster.deleted)
        }
        total = 0.0
        for r in want.values():
            total += r or 0.0
        assert [pv.rps for pv in view.pods] == [want[p.pod_id] if p.ready_s <= now_s else None for p in cluster.pods]
        assert view.total_rps == total


class LateReader:
    """Scales on a fixed schedule (creating and deleting pods, changing batching once) and keeps
    the views: read at decide time (`eager`) or only after the whole replay (`late`)."""

    name: ClassVar[str] = "late-reader"
    knob: ClassVar[str] = "replicas"
    clairvoyant: ClassVar[bool] = False

    def __init__(self, eager: bool) -> None:
        self.period_s = 3.0
        self.eager = eager
        self.views: list[ClusterView] = []
        self.seen: list[str] = []

    def start(self, ctx: PolicyContext) -> None:
        pass

    def decide(self, view: ClusterView) -> PolicyOutput:
        self.views.append(view)
        if self.eager:
            self.seen.append(repr(view))
        t = view.now_s
        params = BatchingParams(max_batch_size=16) if t >= 600 else None
        return PolicyOutput(2 + int(t // 50) % 6, batching=params)


def test_a_deferred_view_read_after_the_replay_shows_the_tick_not_the_future() -> None:
    rate = 40.0 + 30.0 * np.sin(np.arange(1500) / 60.0)
    eager, late = LateReader(eager=True), LateReader(eager=False)
    engine.run_rates(rate, SPEC, eager)
    engine.run_rates(rate, SPEC, late)
    assert len(late.views) == len(eager.seen) == 500
    late_seen = [repr(v) for v in late.views]
    assert late_seen == eager.seen
    # the schedule did create, delete and re-batch pods, so a peek at the end state would differ
    assert len({v.status_replicas for v in late.views}) >= 5
    assert {v.batching.max_batch_size for v in late.views} == {SPEC.batching.initial.max_batch_size, 16}
    assert any(v.total_rps != sum(p.rps or 0.0 for p in v.pods) for v in late.views)  # deleted pods' series


class InFlightReader:
    """Scales and re-batches on a 3 s schedule; records the in-flight total of every second, from
    each 1 s view (`period_s=1`) or read back by `in_flight_history` at each 3 s tick."""

    name: ClassVar[str] = "in-flight-reader"
    knob: ClassVar[str] = "replicas"
    clairvoyant: ClassVar[bool] = False

    def __init__(self, period_s: int) -> None:
        self.period_s = float(period_s)
        self.samples: list[tuple[float, float | None]] = []
        self.last: PolicyOutput | None = None
        self.start_s = 0.0

    def start(self, ctx: PolicyContext) -> None:
        self.start_s = ctx.start_s

    def decide(self, view: ClusterView) -> PolicyOutput:
        if self.period_s == 1.0:
            self.samples.append((view.now_s, view.in_flight))
        else:
            self.samples.extend(view.in_flight_history(int(self.period_s) if self.samples else 1))
        t = view.now_s - self.start_s
        if self.last is None or t % 3 == 0:  # the 1 s run repeats its last output in between
            params = BatchingParams(max_batch_size=16) if t >= 300 else None
            self.last = PolicyOutput(1 + int(t // 40) % 7, batching=params)
        return self.last


def test_in_flight_history_equals_the_per_second_views() -> None:
    rate = 60.0 + 50.0 * np.sin(np.arange(900) / 45.0)
    every, ticks = InFlightReader(1), InFlightReader(3)
    r1 = engine.run_rates(rate, SPEC, every, start_s=1000.0)
    r3 = engine.run_rates(rate, SPEC, ticks, start_s=1000.0)
    assert np.array_equal(r1.timeline.ready, r3.timeline.ready)  # same cluster, served in 1 s or 3 s steps
    assert len(ticks.samples) == 898  # no tick after second 897
    assert ticks.samples == every.samples[:898]  # same times, same values (None: no ready pod)
    assert all(v is not None and v > 0 for _, v in ticks.samples[1:])
    assert len({v for _, v in ticks.samples}) > 800


def test_mean_latency_lookup_is_the_rate_tables_point() -> None:
    table = rate_table(CapacityModel(SPEC.profile), SPEC.batching.initial, SPEC.slo)
    top = table.top_rps
    for r in [0.0, -1.0, top, top * 2, *np.random.default_rng(3).uniform(0.0, top * 1.1, 500).tolist()]:
        assert table.mean_ms_at(r) == table.point(r)[1]
