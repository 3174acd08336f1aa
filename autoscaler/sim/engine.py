"""The what-if engine: replay a trace through one policy on the simulated cluster.

Owns the simulated clock and the order of events, identical for every policy so comparisons
are fair. Every `period_s` of simulated time (the policy's own sync/poll period) the metrics
pipeline builds the `ClusterView` from the past only, the policy decides, and its output is
applied the way the HPA controller or our daemon would apply it: `scale.spec.replicas` is
patched (clamped to the spec's [min, max], as the HPA does), a batching change rolls the pod
template out with surge and maxUnavailable 0. Between decisions the cluster serves the load
second by second, in one of two fidelities:

* `fluid`: per-second steady state from tables measured with the exact batching DES (`sim/fluid.py`,
  `sim/truth.py`), vectorized over each decision period — a 7-day 1 s replay takes seconds; an
  overload's queue is carried across seconds as backlog (`fluid.backlog_scan`);
* `request`: every request through the exact batching DES (`sim/reqlevel.py`).

Fluid mode serves ahead of the policy: most ticks change nothing, and then the cluster's next
seconds depend on nothing the policy does, so the engine serves several periods at once (spans
doubling up to 64 periods while the policy keeps still). When a tick does change replicas or
batching, the seconds from that tick on are taken back (`Cluster.rewind_to`, `_Serving.rewind_to`;
the timeline's running sums are chunking-invariant) and served again. Views read only seconds
before their tick, which served-ahead seconds never are, so the replay is bit for bit the one
that serves each period after its decision (`speculate=False`; tested for every policy).

Masked trace gaps (NaN: a logging outage, not silence) are unknown load, not idle
(`gap_policy` "bridged+excluded"): the cluster serves the load bridged linearly across the gap
(`workload.bridge_gaps`), the metrics pipeline reports the gap seconds as missing data (no scrape,
no sample: each policy reacts as it does to absent series), and the summary's scored metrics
(requests, attainment, rejected, latency quantiles, replica-hours, GPU utilization) leave them out;
`gap_seconds`, `gap_requests` and `gap_replica_hours` say what was left out. The history handed to
the forecasters keeps gaps missing.

Start: a pre-roll of `preroll_s` seconds (the trace's history, else its first minute's rate)
gives the counters and rate windows data; the cluster starts with what the load at t = 0 needs
at the SLO; at t = 0 the policy's first decision is applied instantly (ready pods), so each
policy starts from what it wants rather than paying a cold start for the engine's choice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.types import FloatArray
from autoscaler.sim.cluster import Cluster, Pod
from autoscaler.sim.fluid import (
    LATENCY_GRID_MS,
    REPORT_QUANTILES,
    RateTable,
    backlog_scan,
    quantiles_from_cdf,
    rate_table,
    uniform_cdf,
)
from autoscaler.sim.pipeline import MetricsPipeline, PipelineConfig
from autoscaler.sim.policies import registry
from autoscaler.sim.policies.base import Policy
from autoscaler.sim.reqlevel import ROUTINGS, RequestServer
from autoscaler.sim.timeline import Timeline
from autoscaler.sim.traces import BoolArray, Trace, bridge_gaps
from autoscaler.sim.view import PolicyContext, PolicyOutput, empty_history
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec

FIDELITIES = ("fluid", "request")
GAP_POLICY = "bridged+excluded"  # masked trace gaps: load bridged, missing to policies, not scored
_SCALAR_SERVE_S = 16  # periods up to this long are served with plain floats
# serving ahead (fluid): spans of 2..64 policy periods, doubled while the policy changes nothing
# and halved when it does (the seconds after its change are served again)
_SPAN_MIN_TICKS = 2
_SPAN_MAX_TICKS = 64
ProgressFn = Callable[[int, int], None]


@dataclass
class SimResult:
    """Everything one replay produced: the summary row and the per-second timeline."""

    policy: str
    trace: str
    fidelity: str
    seed: int
    knobs: dict[str, Any]
    spec: ServingAutoscalerSpec
    timeline: Timeline
    summary: dict[str, Any] = field(default_factory=dict)
    true_service_scale: float = 1.0  # the simulated replicas' speed relative to the spec's profile
    settings: dict[str, Any] = field(default_factory=dict)  # knobs as resolved (registry.settings_used)


def _clamp(n: int, spec: ServingAutoscalerSpec) -> int:
    return max(spec.min_replicas, min(spec.max_replicas, n))


def needed_replicas(rate_rps: float, capacity_rps: float, spec: ServingAutoscalerSpec) -> int:
    """Replicas the load needs at the SLO capacity, clamped to the spec's [min, max]."""
    if capacity_rps <= 0:
        return spec.max_replicas
    return _clamp(math.ceil(max(rate_rps, 0.0) / capacity_rps - 1e-9), spec)


def _check_fidelity(fidelity: str) -> None:
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity: expected one of {', '.join(FIDELITIES)} (got {fidelity!r})")


def run(
    trace: Trace,
    spec: ServingAutoscalerSpec,
    policy: Policy | str,
    *,
    fidelity: str = "fluid",
    seed: int = 0,
    progress: ProgressFn | None = None,
    knobs: Mapping[str, Any] | None = None,
    history_rps: FloatArray | None = None,
    pipeline: PipelineConfig | None = None,
    preroll_s: int = 180,
    speculate: bool = True,
    routing: str = "random",
    true_service_scale: float = 1.0,
) -> SimResult:
    """Replay `trace` through `policy` (an instance, or a registry name built with `knobs`).

    `true_service_scale`: the simulated replicas serve every batch this many times slower than the
    spec's profile says (1.15 = 15 % slower); the policy still reads the spec's profile.
    """
    _check_fidelity(fidelity)
    raw = trace.rate_per_second()
    gap = np.isnan(raw)
    rate = bridge_gaps(raw)
    arrivals_s: FloatArray | None = None
    if fidelity == "request":
        arrivals_s = trace.arrivals(seed, bridge=True)
        n = len(rate)
        sec = np.floor(arrivals_s).astype(np.int64)
        rate = np.bincount(sec[sec < n], minlength=n).astype(np.float64)
    return run_rates(
        rate,
        spec,
        policy,
        trace_name=trace.name,
        start_s=trace.start_s,
        fidelity=fidelity,
        arrivals_s=arrivals_s,
        seed=seed,
        progress=progress,
        knobs=knobs,
        history_rps=history_rps,
        pipeline=pipeline,
        preroll_s=preroll_s,
        speculate=speculate,
        routing=routing,
        gap_mask=gap,
        true_service_scale=true_service_scale,
    )


def run_rates(
    rate_rps: FloatArray,
    spec: ServingAutoscalerSpec,
    policy: Policy | str,
    *,
    trace_name: str = "rates",
    start_s: float = 0.0,
    fidelity: str = "fluid",
    arrivals_s: FloatArray | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    knobs: Mapping[str, Any] | None = None,
    history_rps: FloatArray | None = None,
    pipeline: PipelineConfig | None = None,
    preroll_s: int = 180,
    speculate: bool = True,
    routing: str = "random",
    gap_mask: BoolArray | None = None,
    true_service_scale: float = 1.0,
) -> SimResult:
    """Replay a per-second offered load (requests/s) — the hook for `--from-prometheus` history.

    `fidelity="request"` needs `arrivals_s` (request times, seconds from the window start);
    `routing` spreads them over the ready pods: "random" (kube-proxy, seeded) or "round-robin".
    NaN seconds of `rate_rps`, and seconds where `gap_mask` is True, are gaps (module docstring).
    `speculate=False` serves one policy period at a time (the reference the tests compare
    serving ahead against: both give the same replay, bit for bit). `true_service_scale` as in `run`.
    """
    wall0 = time.perf_counter()
    _check_fidelity(fidelity)
    scale = true_service_scale
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"true_service_scale: expected a finite number > 0 (got {true_service_scale!r})")
    knobs = dict(knobs or {})
    if isinstance(policy, str):
        name = policy
        pol = registry.create(policy, spec, **knobs)
    else:
        pol = policy
        name = type(policy).name
    rate = np.asarray(rate_rps, dtype=np.float64)
    if rate.ndim != 1 or len(rate) == 0:
        raise ValueError(f"rate_rps: expected a non-empty 1-D per-second array (got shape {rate.shape})")
    gap = np.isnan(rate)
    if gap_mask is not None:
        if np.shape(gap_mask) != rate.shape:
            got = np.shape(gap_mask)
            raise ValueError(f"gap_mask: expected one flag per second of rate_rps, shape {rate.shape} (got {got})")
        gap |= np.asarray(gap_mask, dtype=bool)
    rate = bridge_gaps(rate)
    if fidelity == "request" and arrivals_s is None:
        raise ValueError("fidelity 'request' needs arrivals_s (request times)")
    if routing not in ROUTINGS:
        raise ValueError(f"routing: expected one of {', '.join(ROUTINGS)} (got {routing!r})")
    n_s = len(rate)
    hist_raw = np.zeros(0) if history_rps is None else np.asarray(history_rps, dtype=np.float64)
    hist = bridge_gaps(hist_raw)  # NaN (gaps) stay NaN for the forecasters, bridged load for the pre-roll
    # the simulated replicas' truth: the profile at their real speed (tables measured with the DES)
    model = CapacityModel(spec.profile, service_scale=float(true_service_scale))
    params0 = spec.batching.initial
    pipe = MetricsPipeline(spec, lambda p: rate_table(model, p, spec.slo), pipeline, live_latency=fidelity == "request")

    def fresh(replicas: int, params: BatchingParams) -> tuple[Timeline, Cluster, _Serving]:
        tl = Timeline(preroll_s=preroll_s, n_s=n_s, start_s=float(start_s))
        # pre-roll load: the history's tail, else the first minute's mean
        if len(hist) >= preroll_s:
            tl.arrivals[:preroll_s] = hist[len(hist) - preroll_s :]
        else:
            tl.arrivals[:preroll_s] = float(np.mean(rate[: min(60, n_s)]))
        tl.arrivals[preroll_s:] = rate
        tl.gap[preroll_s:] = gap
        if len(hist) >= preroll_s:
            tl.gap[:preroll_s] = np.isnan(hist_raw[len(hist) - preroll_s :])
        tl.has_gaps = bool(tl.gap.any())
        cluster = Cluster(spec.startup, params, initial_replicas=replicas, seed=seed, now_s=-preroll_s)
        sim = _Serving(spec, model, tl, fidelity, arrivals_s, params, routing=routing, seed=seed)
        sim.serve_fluid(cluster, -preroll_s, 0)  # pre-roll is always fluid: it only fills counters
        if fidelity == "request":
            sim.fill_columns(0, preroll_s)
            tl.served_latency_q_ms[:preroll_s] = tl.latency_q_ms[:preroll_s]
        return tl, cluster, sim

    cap0 = model.capacity_at_slo_rps(params0, spec.slo)
    n0 = needed_replicas(float(np.max(rate[: min(60, n_s)])), cap0, spec)
    srv = _ServeAhead(fresh, n0, params0, n_s=n_s, fidelity=fidelity, speculate=speculate)
    clairvoyant = bool(getattr(pol, "clairvoyant", False))
    ctx = PolicyContext(
        spec=spec,
        start_s=float(start_s),
        initial_replicas=n0,
        step_s=1.0,
        history_rps=hist_raw if len(hist_raw) else empty_history(),
        history_step_s=1.0,
        future_rps=rate.copy() if clairvoyant else None,
        true_service_scale=float(true_service_scale) if clairvoyant else 1.0,
    )
    pol.start(ctx)
    period = max(1, round(float(pol.period_s)))
    log = _DecisionLog()
    t = 0
    while t < n_s:
        out = pol.decide(pipe.build_view(srv.tl, srv.cluster, t))
        desired = _clamp(int(out.desired_replicas), spec)
        if t == 0:
            # the policy's own start: its first choice of replicas and batching, already running
            params = out.batching if out.batching is not None else params0
            if desired != n0 or params != params0:
                srv.restart(desired, params)
        else:
            srv.apply(t, desired, out.batching)
        t_next = min(n_s, t + period)
        log.write(srv.tl, t, t_next, desired, out)
        srv.serve_to(t, t_next, period)
        t = t_next
        if progress is not None:
            progress(t, n_s)
    tl, cluster, sim = srv.tl, srv.cluster, srv.sim
    log.close(tl, n_s)
    result = SimResult(
        policy=name,
        trace=trace_name,
        fidelity=fidelity,
        seed=seed,
        knobs=knobs,
        spec=spec,
        timeline=tl,
        true_service_scale=float(true_service_scale),
        settings=registry.settings_used(pol, knobs),
    )
    result.summary = summarize(result, sim, cluster, wall_s=time.perf_counter() - wall0)
    # how our policy reaches the Deployment ("hpa": through the HPA copy; "direct"); None for baselines
    mode = getattr(pol, "mode", None)
    result.summary["mode"] = getattr(mode, "value", mode)
    if fidelity == "request":
        result.summary["routing"] = routing
    result.summary["history_s"] = float(len(hist_raw))  # per-second history before the window
    return result


class _ServeAhead:
    """The simulated cluster, its serving and the timeline, served up to `served_to`.

    Applies each tick's decision to the cluster and serves the seconds up to the next tick. In
    fluid mode with `speculate` it serves ahead of the policy on the tick grid (spans of
    `_SPAN_MIN_TICKS`..`_SPAN_MAX_TICKS` periods, doubled while the policy changes nothing), and a
    decision that changes the cluster takes back the served-ahead seconds it invalidates (halving
    the span). The replay is bit for bit the one served a period at a time (module docstring).
    """

    def __init__(
        self,
        fresh: Callable[[int, BatchingParams], tuple[Timeline, Cluster, _Serving]],
        replicas: int,
        params: BatchingParams,
        *,
        n_s: int,
        fidelity: str,
        speculate: bool,
    ) -> None:
        self._fresh = fresh
        self.tl, self.cluster, self.sim = fresh(replicas, params)
        self.n_s = n_s
        self.requests = fidelity == "request"
        self.ahead = speculate and fidelity == "fluid"
        self.span_ticks = _SPAN_MIN_TICKS
        self.served_to = 0  # the timeline is served up to here (past the tick when served ahead)

    def restart(self, replicas: int, params: BatchingParams) -> None:
        """Start over (at t = 0, before anything is served) with `replicas` ready pods on `params`."""
        self.tl, self.cluster, self.sim = self._fresh(replicas, params)

    def apply(self, t: int, desired: int, batching: BatchingParams | None) -> None:
        """Patch the cluster at tick `t` to `desired` replicas (and `batching`, when given); take
        back the served-ahead seconds the change invalidates."""
        cluster = self.cluster
        if cluster.uniform and desired == cluster.spec_replicas and (batching is None or batching == cluster.template):
            return  # nothing changes: every served second stands
        if self.served_to > t and cluster.uniform and (batching is None or batching == cluster.template):
            self._rescale_ahead(t, desired)
            return
        if self.served_to > t:  # served ahead assuming no change: take back the seconds from t on
            self.rewind_on_change(t)
        cluster.patch_replicas(desired, t)
        if batching is not None:
            cluster.patch_batching(batching, t)

    def _rescale_ahead(self, t: int, desired: int) -> None:
        """Served ahead assuming no change, and only the replica count changed: the pods it adds or
        removes change nothing served before the first of them would have been ready, except the
        pod count (what is paid for)."""
        cluster, tl, served_to = self.cluster, self.tl, self.served_to
        before = {p.pod_id: p for p in cluster.pods}
        cluster.patch_replicas(desired, t)
        after = {p.pod_id for p in cluster.pods}
        first_s = min(
            [p.ready_s for i, p in before.items() if i not in after]
            + [p.ready_s for p in cluster.pods if p.pod_id not in before],
            default=served_to + 1,  # no pod added or removed: every served second stands
        )
        keep_to = min(served_to, max(t, first_s - 1))
        tl.pods[tl.index(t) : tl.index(keep_to)] = len(cluster.pods)
        if served_to > keep_to:  # take back the seconds from keep_to on
            self.rewind_on_change(keep_to)

    def rewind_on_change(self, t: int) -> None:
        """Take back the seconds served from `t` on (a decision changed them); shorten the span."""
        self.cluster.rewind_to(t)
        self.sim.rewind_to(t)
        self.served_to = t
        self.span_ticks = max(_SPAN_MIN_TICKS, self.span_ticks // 2)

    def serve_to(self, t: int, t_next: int, period: int) -> None:
        """Serve at least up to the next tick `t_next` (fluid with `speculate`: up to the span ahead)."""
        if self.served_to >= t_next:
            return
        if self.requests:
            self.sim.serve_requests(self.cluster, t, t_next)
            self.served_to = t_next
            return
        end = t_next
        if self.ahead and self.cluster.uniform:
            # serve ahead on the tick grid; if the policy changes nothing (the usual case) the next
            # ticks find their seconds already served
            end = min(self.n_s, t + self.span_ticks * period)
            self.span_ticks = min(_SPAN_MAX_TICKS, self.span_ticks * 2)
        self.sim.serve_fluid(self.cluster, self.served_to, end)
        self.served_to = end


class _DecisionLog:
    """Writes each tick's decision into the timeline: `desired` in runs of equal values, and the
    policy's forecast (with its band) over the tick's period."""

    def __init__(self) -> None:
        self.run_from, self.run_desired = 0, -1

    def write(self, tl: Timeline, t: int, t_next: int, desired: int, out: PolicyOutput) -> None:
        if desired != self.run_desired or t == 0:
            tl.desired[tl.index(self.run_from) : tl.index(t)] = self.run_desired
            self.run_from, self.run_desired = t, desired
        if out.forecast_rps is not None:
            i0, i1 = tl.index(t), tl.index(t_next)
            tl.forecast[i0:i1] = out.forecast_rps
            tl.forecast_lo[i0:i1] = out.forecast_lo_rps if out.forecast_lo_rps is not None else np.nan
            tl.forecast_hi[i0:i1] = out.forecast_hi_rps if out.forecast_hi_rps is not None else np.nan

    def close(self, tl: Timeline, n_s: int) -> None:
        tl.desired[tl.index(self.run_from) : tl.index(n_s)] = self.run_desired


class _Serving:
    """Serves the load on the cluster's ready pods and records it in the timeline.

    Fluid mode computes live, per decision period, only what the metrics pipeline reads
    (served and rejected counts); everything else (latency, batch, utilization, the run-level
    latency distribution) is computed for the whole replay at once in `finalize()`.
    """

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        model: CapacityModel,
        tl: Timeline,
        fidelity: str,
        arrivals_s: FloatArray | None,
        params0: BatchingParams,
        *,
        routing: str = "random",
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self.model = model
        self.tl = tl
        self.params0 = params0  # the starting template; pods on other parameters are tracked apart
        # (index lo, index hi, params, ready count) for ready pods not running params0
        self.other_groups: list[tuple[int, int, BatchingParams, int]] = []
        self.requests: RequestServer | None = None
        self._last_params: BatchingParams | None = None
        self._last_table: RateTable | None = None
        # fluid backlog (`fluid.backlog_scan`), per timeline index: requests queued at the end of each
        # second, and for the seconds served as a queue their first/last accepted latency (NaN: the
        # steady-state tables serve it). Re-served seconds overwrite theirs: rewinding needs no undo.
        size = len(tl.arrivals)
        self.backlog_end = np.zeros(size)
        self.queue_lat0_ms = np.full(size, np.nan)
        self.queue_lat1_ms = np.full(size, np.nan)
        self._backlog_dirty_to = 0  # indices from here on hold no backlog record (nothing to clear)
        if fidelity == "request":
            assert arrivals_s is not None
            arr = np.asarray(arrivals_s, dtype=np.float64)
            self.requests = RequestServer(model.service, spec.slo, arr, routing=routing, seed=seed)

    def table(self, params: BatchingParams) -> RateTable:
        if params is self._last_params and self._last_table is not None:  # skips hashing the key
            return self._last_table
        self._last_params, self._last_table = params, rate_table(self.model, params, self.spec.slo)
        return self._last_table

    def _walk(self, cluster: Cluster, t0: int, t1: int, *, need_pods: bool = False) -> list[tuple[int, int, list[Pod]]]:
        """Split [t0, t1) where pods become ready; advance the cluster; record pods/ready counts.

        The segments carry their ready pods only with `need_pods` (request fidelity); fluid mode
        needs counts per batching configuration, which a cluster without a rollout gives directly.
        """
        tl = self.tl
        segs: list[tuple[int, int, list[Pod]]] = []
        s = t0
        p0 = self.params0
        while s < t1:
            e = cluster.next_ready_s(s)
            seg_end = t1 if e is None else min(t1, e)
            lo, hi = tl.index(s), tl.index(seg_end)
            odd: dict[BatchingParams, int] = {}
            if cluster.uniform and not need_pods:
                n_ready = cluster.ready_count(s)
                t = cluster.template
                if n_ready and t is not p0 and t != p0:
                    odd[t] = n_ready
                segs.append((s, seg_end, []))
            else:
                ready = cluster.ready_pods(s)
                n_ready = len(ready)
                segs.append((s, seg_end, ready))
                for p in ready:
                    if p.params != p0:
                        odd[p.params] = odd.get(p.params, 0) + 1
            if hi - lo == 1:
                tl.ready[lo] = n_ready
                tl.pods[lo] = len(cluster.pods)
            else:
                tl.ready[lo:hi] = n_ready
                tl.pods[lo:hi] = len(cluster.pods)
            for params, c in odd.items():
                self.other_groups.append((lo, hi, params, c))
            s = seg_end
            if e is not None and e == s:
                cluster.on_second(s)
        return segs

    def serve_fluid(self, cluster: Cluster, t0: int, t1: int) -> None:
        tl = self.tl
        n_other = len(self.other_groups)
        self._walk(cluster, t0, t1)
        i0, i1 = tl.index(t0), tl.index(t1)
        uniform = len(self.other_groups) == n_other
        if i1 - i0 <= _SCALAR_SERVE_S and uniform:
            # a short period on one batching configuration: plain floats beat numpy's per-call
            # overhead; rejected_one and Timeline.close are bit-identical to the array paths
            tb = self.table(self.params0)
            one = tb.rejected_one
            arr_l = tl.arrivals[i0:i1].tolist()
            ready_l = tl.ready[i0:i1].tolist()
            rej_l = [one(a1, r1) for a1, r1 in zip(arr_l, ready_l, strict=True)]
            mu = tb.mu_rps
            over = [
                i for i, (a1, r1) in enumerate(zip(arr_l, ready_l, strict=True)) if a1 / (r1 if r1 > 1.0 else 1.0) > mu
            ]
            self._carry_backlog(tb, i0, i1, arr_l, ready_l, over, rej_l)
            tl.rejected[i0:i1] = rej_l
            tl.served[i0:i1] = [a1 - r1 for a1, r1 in zip(arr_l, rej_l, strict=True)]
            tl.close(i0, i1)
            return
        arr = tl.arrivals[i0:i1]
        ready = tl.ready[i0:i1]
        if uniform:
            tb = self.table(self.params0)
            rej = tb.rejected_count(arr, ready)
            over_a = np.flatnonzero(arr / np.maximum(ready, 1.0) > tb.mu_rps)
            if len(over_a) or (i0 > 0 and self.backlog_end[i0 - 1] > 0):
                rej_l = rej.tolist()
                self._carry_backlog(tb, i0, i1, arr.tolist(), ready.tolist(), over_a.tolist(), rej_l)
                rej = np.asarray(rej_l)
            else:
                self._carry_backlog(tb, i0, i1, [], [], [], [])
        else:
            # a rollout (pods on several batching configurations): steady state only, no backlog
            self._clear_backlog(i0, i1)
            counts = self._group_counts(i0, i1, self.other_groups[n_other:])
            rej = np.where(ready <= 0, arr, 0.0)
            for params, cnt in counts.items():
                share = np.divide(cnt, ready, out=np.zeros_like(cnt), where=ready > 0)
                rej = rej + self.table(params).rejected_count(arr * share, cnt) * (cnt > 0)
        tl.rejected[i0:i1] = rej
        tl.served[i0:i1] = arr - rej
        tl.close(i0, i1)

    def _carry_backlog(
        self,
        tb: RateTable,
        i0: int,
        i1: int,
        arr_l: list[float],
        ready_l: list[float],
        over: list[int],
        rej_l: list[float],
    ) -> None:
        """Run `fluid.backlog_scan` over indices [i0, i1) (empty lists: no second over capacity and no
        backlog); overwrite `rej_l` for the seconds served as a queue and record their latencies."""
        self._clear_backlog(i0, i1)
        b0 = float(self.backlog_end[i0 - 1]) if i0 > 0 else 0.0
        if not over and b0 <= 0.0:
            return
        q = backlog_scan(tb, arr_l, ready_l, over, b0)
        if not q.idx:
            return
        for j, r in zip(q.idx, q.rejected, strict=True):
            rej_l[j] = r
        idx = np.asarray(q.idx, dtype=np.int64) + i0
        self.queue_lat0_ms[idx] = q.lat0_ms
        self.queue_lat1_ms[idx] = q.lat1_ms
        self.backlog_end[idx] = q.backlog_end
        self._backlog_dirty_to = max(self._backlog_dirty_to, i1)

    def _clear_backlog(self, i0: int, i1: int) -> None:
        """Forget the backlog records of indices [i0, i1) (seconds served again after a rewind)."""
        if i0 < self._backlog_dirty_to:
            self.backlog_end[i0:i1] = 0.0
            self.queue_lat0_ms[i0:i1] = np.nan
            self.queue_lat1_ms[i0:i1] = np.nan

    def rewind_to(self, t: int) -> None:
        """Forget the batching groups recorded for seconds from `t` on (they are served again). The
        backlog needs no undo: serving from `t` reads the backlog at `t - 1` and overwrites the rest."""
        cut = self.tl.index(t)
        self.other_groups = [(lo, min(hi, cut), p, c) for lo, hi, p, c in self.other_groups if lo < cut]

    def _group_counts(
        self, i0: int, i1: int, others: list[tuple[int, int, BatchingParams, int]]
    ) -> dict[BatchingParams, FloatArray]:
        """Ready pods per batching configuration for indices [i0, i1)."""
        tl = self.tl
        base = tl.ready[i0:i1].copy()
        out: dict[BatchingParams, FloatArray] = {}
        for lo, hi, params, c in others:
            lo2, hi2 = max(lo, i0), min(hi, i1)
            if hi2 <= lo2:
                continue
            arr = out.get(params)
            if arr is None:
                arr = out[params] = np.zeros(i1 - i0)
            arr[lo2 - i0 : hi2 - i0] += c
            base[lo2 - i0 : hi2 - i0] -= c
        out[self.params0] = base
        return out

    def serve_requests(self, cluster: Cluster, t0: int, t1: int) -> None:
        assert self.requests is not None
        segs = self._walk(cluster, t0, t1, need_pods=True)
        self.requests.serve(self.tl, t0, t1, segs)
        self.tl.close(self.tl.index(t0), self.tl.index(t1))

    def finalize(self) -> list[float]:
        """Fill the per-second latency/batch/utilization columns; return the run's p50/p95/p99
        (of the requests outside gaps: the scored ones)."""
        tl = self.tl
        w = tl.window()
        scored = ~tl.gap[w]
        total = float(tl.arrivals[w][scored].sum())
        if self.requests is not None:
            self.requests.drain(tl)  # pods dispatch what they still hold; completes the columns
            lat = self.requests.all_latencies_ms()
            if tl.has_gaps:
                sec = np.floor(self.requests.arrivals_s[: len(lat)]).astype(np.int64)
                lat = lat[scored[np.clip(sec, 0, tl.n_s - 1)]]
            if len(lat) == 0:
                return [math.nan for _ in REPORT_QUANTILES]
            return [float(np.quantile(lat, q, method="higher")) for q in REPORT_QUANTILES]
        cdf = self.fill_columns(w.start, w.stop, scored=scored if tl.has_gaps else None)
        if cdf is None:
            return [math.inf for _ in REPORT_QUANTILES]
        return quantiles_from_cdf(cdf, total, REPORT_QUANTILES)

    def fill_columns(self, i0: int, i1: int, *, scored: BoolArray | None = None) -> FloatArray | None:
        """Fluid latency/batch/utilization columns for indices [i0, i1); the run-level CDF mass
        (of the `scored` seconds only, when given)."""
        tl = self.tl
        arr = tl.arrivals[i0:i1]
        ready = tl.ready[i0:i1]
        counts = self._group_counts(i0, i1, self.other_groups)
        cols = ("within", "lat_q", "p50", "p99", "mean", "batch", "busy")
        acc = {k: np.zeros(i1 - i0) for k in cols}
        cdf: FloatArray | None = None
        lat0 = self.queue_lat0_ms[i0:i1]
        queued = ~np.isnan(lat0)  # seconds served as a fluid queue (params0 only), filled below
        for params, cnt in counts.items():
            if not (cnt > 0).any():
                continue
            share = np.divide(cnt, ready, out=np.zeros_like(cnt), where=ready > 0)
            a_g = arr * share
            tb = self.table(params)
            o = tb.outcome(a_g, cnt)
            acc["within"] += o.within_slo
            for k, v in (
                ("lat_q", o.latency_q_ms),
                ("p50", o.p50_ms),
                ("p99", o.p99_ms),
                ("mean", o.mean_latency_ms),
                ("batch", o.mean_batch),
                ("busy", o.busy),
            ):
                acc[k] += np.nan_to_num(v) * share
            r = np.divide(a_g, cnt, out=np.zeros_like(cnt), where=cnt > 0)
            keep = (cnt > 0) & ~queued
            weights = np.where(keep, a_g, 0.0) if scored is None else np.where(keep & scored, a_g, 0.0)
            c = tb.run_cdf(tb.cdf_weights(r, weights))
            cdf = c if cdf is None else cdf + c
        none = ready <= 0
        nan = np.where(none, np.nan, 0.0)
        tl.within_slo[i0:i1] = np.where(none, 0.0, acc["within"])
        tl.latency_q_ms[i0:i1] = acc["lat_q"] + nan
        tl.p50_ms[i0:i1] = acc["p50"] + nan
        tl.p99_ms[i0:i1] = acc["p99"] + nan
        tl.mean_latency_ms[i0:i1] = acc["mean"] + nan
        tl.mean_batch[i0:i1] = acc["batch"] + nan
        tl.busy[i0:i1] = acc["busy"]
        if queued.any():
            cdf = self._fill_queued(i0, np.flatnonzero(queued), cdf, scored)
        return cdf

    def _fill_queued(
        self, i0: int, rel: npt.NDArray[np.int64], cdf: FloatArray | None, scored: BoolArray | None
    ) -> FloatArray:
        """Columns of the seconds served as a fluid queue: accepted requests' latencies are uniform
        between the first and last one's (`fluid.backlog_scan`), the replicas busy on full batches."""
        tl = self.tl
        idx = rel + i0
        l0, l1 = self.queue_lat0_ms[idx], self.queue_lat1_ms[idx]
        lo, width = np.minimum(l0, l1), np.abs(l1 - l0)
        accepted = tl.arrivals[idx] - tl.rejected[idx]
        q = self.spec.slo.latency_quantile
        tl.within_slo[idx] = accepted * uniform_cdf(l0, l1, np.array([self.spec.slo.latency_ms]))[:, 0]
        tl.latency_q_ms[idx] = lo + q * width
        tl.p50_ms[idx] = lo + 0.5 * width
        tl.p99_ms[idx] = lo + 0.99 * width
        tl.mean_latency_ms[idx] = lo + 0.5 * width
        tl.mean_batch[idx] = float(self.params0.max_batch_size)
        tl.busy[idx] = 1.0
        w = accepted if scored is None else np.where(scored[rel], accepted, 0.0)
        out = np.zeros(len(LATENCY_GRID_MS)) if cdf is None else cdf
        for c in range(0, len(idx), 8192):  # rows x grid, in bounded chunks
            out = out + w[c : c + 8192] @ uniform_cdf(l0[c : c + 8192], l1[c : c + 8192], LATENCY_GRID_MS)
        return out


def summarize(result: SimResult, sim: _Serving, cluster: Cluster, *, wall_s: float) -> dict[str, Any]:
    tl = result.timeline
    w = tl.window()
    spec = result.spec
    p50, p95, p99 = sim.finalize()
    gap = tl.gap[w]
    scored = ~gap  # gap seconds (unknown load, bridged) are left out of every scored metric
    requests = float(tl.arrivals[w][scored].sum())
    within = float(tl.within_slo[w][scored].sum())
    attainment = within / requests if requests > 0 else 1.0
    ready = tl.ready[w][scored]
    ready_s = float(ready.sum())
    gpu = float((tl.busy[w][scored] * ready).sum() / ready_s) if ready_s > 0 else 0.0
    pods = tl.pods[w][scored]
    return {
        "policy": result.policy,
        "trace": result.trace,
        "fidelity": result.fidelity,
        "seed": result.seed,
        "start_s": tl.start_s,
        "duration_s": tl.n_s,
        "requests": round(requests),
        "slo_ms": spec.slo.latency_ms,
        "slo_quantile": spec.slo.latency_quantile,
        "slo_attainment_goal": spec.slo.attainment,
        "slo_attainment": attainment,
        "meets_slo": attainment >= spec.slo.attainment,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "rejected": round(float(tl.rejected[w][scored].sum())),
        "replica_hours": float(pods.sum()) / 3600.0,
        "ready_replica_hours": ready_s / 3600.0,
        "max_replicas_used": int(pods.max()) if len(pods) else 0,
        "gap_policy": GAP_POLICY,
        "gap_seconds": int(gap.sum()),
        "gap_requests": round(float(tl.arrivals[w][gap].sum())),
        "gap_replica_hours": float(tl.pods[w][gap].sum()) / 3600.0,
        "scale_events": cluster.scale_events,
        "mean_gpu_util": gpu,
        "true_service_scale": result.true_service_scale,
        "wall_s": wall_s,
        "knobs": dict(result.knobs),
        "settings": dict(result.settings),
    }
