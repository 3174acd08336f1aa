"""The control loop: every tick, observe all targets, forecast, decide, publish, actuate, record.

Owns the per-target runtime memory (the core's frozen `State`, the forecast driver, the last
forecast to score) and the order of one tick. Blocking work runs in worker threads so the event
loop keeps serving /metrics and the adapter: the batched source query, reading replica counts,
warm starts, forecasting and the actuator's API calls, each phase for all targets in one thread
hop (`_run_targets`). With the daemon's forecast worker (runtime/forecast_pool.py) all targets'
forecasts are one round trip and no refit is awaited: refits run in the worker between ticks.
Warm starts take at most WARM_BUDGET_S per tick, so the first tick of 1,000 targets is not held
by 1,000 history fetches. `decide()` itself is pure and fast and runs inline, timed for the
decision-latency histogram. Only the leader actuates; standbys compute the same decisions in
shadow and publish them to the DecisionStore (the adapter serves them either way).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

from autoscaler.actuators.base import (
    ActuationResult,
    Actuator,
    BatchingOutcome,
    ReplicaStatus,
    ScaleOutcome,
    standby_result,
)
from autoscaler.control import ForecastLike, PredictiveController
from autoscaler.core.types import Decision, FloatArray, Forecast, Observation, Signal, SignalStatus, TargetKey
from autoscaler.runtime.clock import Clock, sleep_or_stop
from autoscaler.runtime.consistency import adopt_cluster_batching
from autoscaler.runtime.forecast_pool import RemoteDriver
from autoscaler.runtime.records import DecisionLog, decision_dict, record
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.sources.base import MetricSource, PodMetricSource
from autoscaler.spec.types import Mode, ServingAutoscalerSpec

log = logging.getLogger(__name__)


class StatusWriter(Protocol):
    """Publishes a decision into the spec's custom resource status (actuators/status.py)."""

    def write(self, spec: ServingAutoscalerSpec, decision: Decision) -> bool: ...


ForecasterFactory = Callable[[ServingAutoscalerSpec], ForecastLike | None]
# (spec, now_s) -> requests/s per forecaster step ending at now_s (NaN = no data); raises on failure
HistoryFetcher = Callable[[ServingAutoscalerSpec, float], FloatArray]


WARM_BUDGET_S = 10.0  # history fetches per tick (monotonic time) before the rest wait for the next tick


def _offered_rps(obs: Observation) -> float | None:
    """The rate `PredictiveController.forecast` feeds its forecaster (missing stays None)."""
    a = obs.arrival_rps
    return a.value if a.ok and a.value is not None and math.isfinite(a.value) else None


def key_of(spec: ServingAutoscalerSpec) -> TargetKey:
    return TargetKey(spec.target.namespace, spec.target.deployment)


@dataclass
class _Target:
    controller: PredictiveController  # the shared controller step (control/): state, forecaster
    scored: tuple[float, float] | None = None  # (end of the forecast's first step, its mean rps)

    @property
    def spec(self) -> ServingAutoscalerSpec:
        return self.controller.spec


@dataclass(frozen=True)
class TickResult:
    """One target's outcome of one tick (for the demo's table and for tests)."""

    spec: ServingAutoscalerSpec
    observation: Observation
    decision: Decision
    actuation: ActuationResult
    leader: bool


@dataclass
class LoopStats:
    ticks: int = 0
    failed_ticks: int = 0
    history: list[TickResult] = field(default_factory=list)


def _error_observation(now_s: float, detail: str) -> Observation:
    return Observation(time_s=now_s, request_rate_rps=Signal.missing(SignalStatus.ERROR, detail))


class ControlLoop:
    def __init__(
        self,
        *,
        clock: Clock,
        source: MetricSource,
        actuator: Actuator,
        telemetry: Telemetry,
        is_leader: Callable[[], bool] = lambda: True,
        forecaster_factory: ForecasterFactory | None = None,
        period_s: float | None = None,
        keep_history: bool = False,
        before_tick: Callable[[], None] | None = None,
        history: HistoryFetcher | None = None,
        status_writer: StatusWriter | None = None,
    ) -> None:
        self.clock = clock
        self.source = source
        self.actuator = actuator
        self.telemetry = telemetry
        self.store = telemetry.store
        self.is_leader = is_leader
        self._factory = forecaster_factory
        self._period_s = period_s
        self._targets: dict[TargetKey, _Target] = {}
        self._records = DecisionLog()
        self._keep_history = keep_history
        self.stats = LoopStats()
        self._before_tick = before_tick
        self._history = history
        self._status = status_writer

    # ------------------------------------------------------------------ specs
    def set_specs(self, specs: Sequence[ServingAutoscalerSpec]) -> None:
        """Replace the set of targets. Unchanged targets keep their State and forecaster."""
        new: dict[TargetKey, _Target] = {}
        for spec in specs:
            key = key_of(spec)
            old = self._targets.get(key)
            if old is None:
                driver = self._factory(spec) if self._factory else None
                new[key] = _Target(PredictiveController(spec, driver, target=key))
                log.info("target added", extra={"target": str(key), "spec": spec.name, "mode": spec.mode.value})
                continue
            driver = old.controller.forecaster
            if old.spec.forecaster != spec.forecaster and self._factory is not None:
                driver = self._factory(spec)
            if old.spec != spec:
                log.info("target spec updated", extra={"target": str(key), "spec": spec.name})
            new[key] = _Target(old.controller.with_spec(spec, driver), old.scored)
        for key in self._targets.keys() - new.keys():
            self.store.remove(key)
            log.info("target removed", extra={"target": str(key)})
        self._targets = new

    @property
    def specs(self) -> list[ServingAutoscalerSpec]:
        return [t.spec for t in self._targets.values()]

    def period_s(self) -> float:
        if self._period_s is not None:
            return self._period_s
        periods = [t.spec.provisioning.decision_period_s for t in self._targets.values()]
        return min(periods) if periods else 15.0

    # ------------------------------------------------------------------ one tick
    async def tick(self) -> list[TickResult]:
        if self._before_tick is not None:
            self._before_tick()
        now_s = self.clock.now_s()
        targets = list(self._targets.items())
        if not targets:
            self.telemetry.ready = True
            return []
        specs = [t.spec for _, t in targets]
        try:
            observations = await asyncio.to_thread(self.source.observe, specs, now_s)
        except Exception as exc:
            detail = f"source failed: {type(exc).__name__}: {str(exc)[:200]}"
            log.error(detail)
            observations = {}
        if isinstance(self.source, PodMetricSource):
            try:
                pods = await asyncio.to_thread(self.source.observe_pods, specs, now_s)
                for key, ps in pods.items():
                    t = self._targets.get(key)
                    if t is not None:
                        self.store.put_pods(key, t.spec.target.model_name, ps)
            except Exception as exc:
                log.warning("pod signals failed", extra={"error": str(exc)[:200]})
        out, ok = await self._run_targets(targets, observations, now_s)
        self.stats.ticks += 1
        self.telemetry.ticks.labels("ok" if ok else "error").inc()
        self.telemetry.leader.set(1 if self.is_leader() else 0)
        if ok:
            self.telemetry.ready = True
        else:
            self.stats.failed_ticks += 1
        if self._keep_history:
            self.stats.history.extend(out)
        return out

    async def _run_targets(
        self, targets: list[tuple[TargetKey, _Target]], observations: dict[TargetKey, Observation], now_s: float
    ) -> tuple[list[TickResult], bool]:
        """The per-target steps in phases, each phase's blocking work for all targets in one worker
        thread (1,000 targets cost a handful of thread hops per tick, not 4,000): replica counts,
        warm starts (within WARM_BUDGET_S), forecasts (one round trip to the forecast worker), then
        decide inline, then actuate, then records. A target that fails in any phase is logged and
        dropped from the rest of this tick; the others go on."""
        failed: set[TargetKey] = set()

        def guard(key: TargetKey, exc: BaseException) -> None:
            failed.add(key)
            log.error("tick failed for target", extra={"target": str(key)}, exc_info=exc)

        def read_all() -> dict[TargetKey, ReplicaStatus | None]:
            got: dict[TargetKey, ReplicaStatus | None] = {}
            for key, t in targets:
                try:
                    got[key] = self.actuator.read_replicas(t.spec)
                except Exception as exc:
                    guard(key, exc)
            return got

        statuses = await asyncio.to_thread(read_all)
        obs_of: dict[TargetKey, Observation] = {}
        for key, t in targets:
            if key in failed:
                continue
            try:
                obs = observations.get(key) or _error_observation(now_s, "no observation returned")
                status = statuses.get(key)
                if status is not None:
                    obs = replace(
                        obs,
                        current_replicas=status.current_replicas,
                        ready_replicas=status.ready_replicas,
                        pending_replicas=status.pending_replicas,
                    )
                self._count_source_errors(key, obs)
                rate = obs.arrival_rps.value if obs.arrival_rps.ok else None
                self._score_forecast(key, t, rate, now_s)
                obs_of[key] = obs
            except Exception as exc:
                guard(key, exc)
        live = [(k, t) for k, t in targets if k not in failed]
        cold = [t.controller for _, t in live if t.controller.forecaster is not None and not t.controller.warmed]
        if cold and self._history is not None:
            await asyncio.to_thread(self._warm_starts, cold)
        forecasts = await asyncio.to_thread(self._forecast_all, live, obs_of, now_s, guard)
        decided: list[tuple[TargetKey, _Target, Observation, Decision]] = []
        for key, t in live:
            if key in failed:
                continue
            try:
                decided.append(
                    (
                        key,
                        t,
                        obs_of[key],
                        self._decide(key, t, obs_of[key], forecasts.get(key), now_s, statuses.get(key)),
                    )
                )
            except Exception as exc:
                guard(key, exc)
        leader = self.is_leader()
        results = await asyncio.to_thread(self._actuate_all, decided, leader, guard)
        out: list[TickResult] = []
        docs: list[tuple[str, dict[str, object]]] = []
        for key, t, obs, decision in decided:
            if key in failed:
                continue
            try:
                result = results[key]
                ctl = t.controller
                ctl.on_actuated(result.batching in (BatchingOutcome.ROLLED_OUT, BatchingOutcome.ALREADY_APPLIED))
                fc = forecasts.get(key)
                if fc is not None and fc.horizon > 0:
                    t.scored = (fc.origin_s + fc.step_s, float(fc.mean[0]))
                self._count_actuation(key, result)
                doc = record(decision, result, leader=leader)
                log.info(
                    "decision",
                    extra={"target": str(key), "decision": decision_dict(decision), "actuation": result.as_dict()},
                )
                if t.spec.outputs.decisions_path:
                    docs.append((t.spec.outputs.decisions_path, doc))
                out.append(TickResult(t.spec, obs, decision, result, leader))
            except Exception as exc:
                guard(key, exc)
        if docs:
            await asyncio.to_thread(self._append_records, docs)
        return out, not failed

    def _warm_starts(self, cold: list[PredictiveController]) -> None:
        """Warm-start targets in order until WARM_BUDGET_S of this tick is spent; the rest warm on
        the next ticks (and forecast cold meanwhile), so a thousand history fetches never hold the
        first tick for minutes."""
        started_s = self.clock.monotonic_s()
        for ctl in cold:
            if self.clock.monotonic_s() - started_s > WARM_BUDGET_S:
                break
            self._warm_start(ctl, self.clock.now_s())

    def _warm_start(self, ctl: PredictiveController, now_s: float) -> None:
        assert self._history is not None
        spec = ctl.spec
        ctl.warmed = True  # tried once: a failed fetch starts cold rather than retrying every tick
        try:
            history = self._history(spec, now_s)
            ctl.warm_start(history, now_s)
            log.info("forecaster warm-started", extra={"target": str(key_of(spec)), "points": len(history)})
        except Exception as exc:  # start cold rather than fail the tick
            log.warning("no history for warm start", extra={"target": str(key_of(spec)), "error": str(exc)[:200]})

    def _forecast_all(
        self,
        live: list[tuple[TargetKey, _Target]],
        obs_of: dict[TargetKey, Observation],
        now_s: float,
        guard: Callable[[TargetKey, BaseException], None],
    ) -> dict[TargetKey, Forecast | None]:
        """Every target's forecast; targets forecasting in the worker process share one round trip."""
        remote: list[tuple[RemoteDriver, float, float, float | None]] = []
        for key, t in live:
            ctl, obs = t.controller, obs_of.get(key)
            if isinstance(ctl.forecaster, RemoteDriver) and obs is not None:
                remote.append((ctl.forecaster, now_s, ctl.horizon_s(obs, now_s), _offered_rps(obs)))
        if remote:
            remote[0][0].pool.forecast_many(remote)
        out: dict[TargetKey, Forecast | None] = {}
        for key, t in live:
            if key not in obs_of:
                continue
            try:
                ctl = t.controller
                out[key] = ctl.forecast(obs_of[key], now_s)
                if ctl.last_forecast_error is not None:
                    log.warning("forecast failed", extra={"target": str(key), "error": ctl.last_forecast_error})
            except Exception as exc:
                guard(key, exc)
        return out

    def _decide(
        self,
        key: TargetKey,
        t: _Target,
        obs: Observation,
        fc: Forecast | None,
        now_s: float,
        status: ReplicaStatus | None,
    ) -> Decision:
        spec, ctl = t.spec, t.controller
        if ctl.state is None:
            current = obs.current_replicas
            ctl.start(now_s, current if current is not None and current >= 0 else 1)
        assert ctl.state is not None
        ctl.state = adopt_cluster_batching(ctl.state, spec, status)  # same state on leader and standbys
        started = self.clock.monotonic_s()
        decision = ctl.decide(obs, fc, now_s)
        self.telemetry.decision_latency.observe(max(0.0, self.clock.monotonic_s() - started))
        self.store.put_decision(
            key,
            spec.target.model_name,
            decision,
            obs,
            labels={**status.pod_labels, "model": spec.target.model_name} if status is not None else None,
            slo=spec.slo,
            published=spec.mode is not Mode.PREVIEW,  # preview: nothing an HPA reads carries it
        )
        return decision

    def _actuate_all(
        self,
        decided: list[tuple[TargetKey, _Target, Observation, Decision]],
        leader: bool,
        guard: Callable[[TargetKey, BaseException], None],
    ) -> dict[TargetKey, ActuationResult]:
        """Only the leader actuates and writes the custom resource's status; standbys get the
        standby result."""
        out: dict[TargetKey, ActuationResult] = {}
        for key, t, _, decision in decided:
            try:
                if leader:
                    out[key] = self.actuator.apply(t.spec, decision)
                    if self._status is not None:
                        self._status.write(t.spec, decision)
                else:
                    out[key] = standby_result(t.spec, decision)
            except Exception as exc:
                guard(key, exc)
        return out

    def _append_records(self, docs: list[tuple[str, dict[str, object]]]) -> None:
        for path, doc in docs:
            try:
                self._records.append(path, doc)
            except Exception:
                log.exception("decision record not written", extra={"path": path})

    def _score_forecast(self, key: TargetKey, t: _Target, rate: float | None, now_s: float) -> None:
        if t.scored is None or rate is None or now_s < t.scored[0]:
            return
        if rate > 0:
            self.telemetry.forecast_error.labels(*self.telemetry.labels(key)).set(abs(t.scored[1] - rate) / rate)
        t.scored = None

    def _count_source_errors(self, key: TargetKey, obs: Observation) -> None:
        for f in fields(obs):
            sig = getattr(obs, f.name)
            if isinstance(sig, Signal) and not sig.ok and f.name != "gpu_util":
                self.telemetry.source_errors.labels(*self.telemetry.labels(key), f.name, sig.status.value).inc()

    def _count_actuation(self, key: TargetKey, result: ActuationResult) -> None:
        lv = self.telemetry.labels(key)
        self.telemetry.actuations.labels(*lv, "scale", result.scale.value).inc()
        self.telemetry.actuations.labels(*lv, "batching", result.batching.value).inc()
        self.telemetry.rollout_pending.labels(*lv).set(1 if result.batching is BatchingOutcome.ROLLED_OUT else 0)
        if result.scale is ScaleOutcome.FAILED:
            log.error("actuation failed", extra={"target": str(key), "detail": result.message})

    # ------------------------------------------------------------------ the root task
    async def run(self, stop: asyncio.Event) -> None:
        """Tick every period until `stop`; a tick in progress always finishes (graceful shutdown)."""
        while not stop.is_set():
            started = self.clock.monotonic_s()
            try:
                await self.tick()
            except Exception:
                log.exception("tick failed")
            delay_s = self.period_s() - (self.clock.monotonic_s() - started)
            await sleep_or_stop(self.clock, max(0.0, delay_s), stop)
