"""PrometheusSource: Observations for many targets from a handful of batched PromQL queries.

Owns turning Prometheus answers into `Signal`s with honest states (docs/design.md rule 5): one
instant query per signal for all targets (`promql.py`), evaluated at `now_s`, sent concurrently
through `prometheus-api-client` with a timeout and no retries (the next tick is the retry).
Mapping back: `(namespace, model_name)` for TF Serving and GPU signals, `(namespace, deployment)`
for replica counts, pod-name prefix → deployment for cold start. States: no series → MISSING,
NaN/Inf → NAN, newest raw sample (`timestamp()`) older than `provisioning.stale_after_s` →
STALE, failed or timed-out query → ERROR for every target for that signal. Each non-OK state is
logged per signal naming the targets (WARNING when it changes, DEBUG while it persists). Never a zero.

One tick costs at most one `timeout_s`, however slow Prometheus is: `observe()` sends every query
of the tick at once (the per-pod queries too; `observe_pods()` at the same `now_s` then reads
those answers instead of asking again), and whatever has not answered when the tick's budget runs
out is an ERROR for this tick. Before, the queries went out in waves of 8 and the pod queries
after them, so a slow Prometheus stretched a tick to about three timeouts.

Values outside a plausible range (`BOUNDS`: negative, or e.g. a rate above 10 million requests/s
per target) are NAN with a detail saying so, like NaN/Inf: a broken exporter or recording rule
answering 1e308 must not pin a target at maxReplicas and in panic mode.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from autoscaler.core.store import PodSignals
from autoscaler.core.types import Observation, Signal, SignalStatus, TargetKey
from autoscaler.sources import multimodel, promql
from autoscaler.sources.base import target_key
from autoscaler.sources.histogram import fraction_at_or_below
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)

Result = list[dict[str, Any]]
REPEAT_WARNING_EVERY = 20  # ticks between WARNING reminders of an unchanged problem
# Plausible ranges per signal (inclusive). Outside them a value is a fault, not a measurement.
MAX_RATE_RPS = 1e7
BOUNDS: dict[str, tuple[float, float]] = {
    "request_rate_rps": (0.0, MAX_RATE_RPS),
    "error_rate_rps": (0.0, MAX_RATE_RPS),
    "rejected_rps": (0.0, MAX_RATE_RPS),
    "burst_rate_rps": (0.0, MAX_RATE_RPS),
    "latency_ms": (0.0, 3.6e6),
    "queue_latency_ms": (0.0, 3.6e6),
    "mean_batch_size": (0.0, 1e6),
    "gpu_util": (0.0, 1.05),  # a ratio; DCGM percent / 100 can round a little above 1
    "cold_start_s": (0.0, 86_400.0),
    "replicas": (0.0, 1e6),
}
_POD_SUFFIX = re.compile(r"^(?P<deploy>.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$")  # <deploy>-<rs hash>-<pod id>


@dataclass(frozen=True)
class _Answer:
    result: Result | None
    error: str = ""


class PrometheusSource:
    """MetricSource + PodMetricSource over the Prometheus HTTP API."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        rate_window_s: float = 60.0,
        scrape_interval_s: float = 15.0,
        max_parallel_queries: int = 64,
    ) -> None:
        """`scrape_interval_s` is Prometheus' TF Serving scrape interval: windows are widened to at
        least two intervals, or `rate()` has fewer than two samples and returns nothing."""
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.scrape_interval_s = scrape_interval_s
        self.rate_window_s = max(rate_window_s, 2.0 * scrape_interval_s)
        self._prom = PrometheusConnect(url=self.url, disable_ssl=True, retry=Retry(total=0), timeout=timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=max_parallel_queries, thread_name_prefix="promql")
        self.queries_sent = 0  # cumulative, for benchmarks and /metrics
        self.query_seconds: dict[str, float] = {}  # PromQL -> duration of its latest run
        self._logged: dict[tuple[str, SignalStatus], tuple[frozenset[str], int]] = {}
        self._pod_answers: tuple[float, tuple[str, ...], dict[str, _Answer]] | None = None  # prefetched

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._prom.close()

    # ------------------------------------------------------------------ querying
    def _query(self, q: str, now_s: float) -> _Answer:
        self.queries_sent += 1
        t0 = time.perf_counter()  # duration only, for telemetry/benchmarks; never a decision input
        try:
            return self._query_inner(q, now_s)
        finally:
            self.query_seconds[q] = time.perf_counter() - t0

    def _query_inner(self, q: str, now_s: float) -> _Answer:
        try:
            res = self._prom.custom_query(
                q, params={"time": f"{now_s:.3f}", "timeout": promql.duration(self.timeout_s)}
            )
        except Exception as e:  # connection refused, timeout, HTTP 4xx/5xx, bad JSON
            text = str(e)
            if isinstance(e, requests.Timeout) or "timed out" in text.lower():
                return _Answer(None, f"timeout after {self.timeout_s:g}s ({type(e).__name__})")
            return _Answer(None, f"{type(e).__name__}: {text}"[:300])
        return _Answer(list(res))

    def _run(self, queries: dict[str, str], now_s: float) -> dict[str, _Answer]:
        """All `queries` at once; those without an answer within `timeout_s` are ERRORs.

        The budget is real elapsed time (it bounds I/O), measured only to stop waiting."""
        futs = {name: self._pool.submit(self._query, q, now_s) for name, q in queries.items()}
        done, _ = wait(futs.values(), timeout=self.timeout_s)
        out: dict[str, _Answer] = {}
        for name, f in futs.items():
            if f in done:
                out[name] = f.result()
            else:
                f.cancel()  # queued ones never start; running ones end at their own timeout
                out[name] = _Answer(None, f"timeout: no answer within the tick budget of {self.timeout_s:g}s")
        for name, a in out.items():
            if a.result is None:
                log.error("prometheus query for signal %s failed: %s (query: %s)", name, a.error, queries[name])
        return out

    # ------------------------------------------------------------------ observe
    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        if not targets:
            return {}
        m = promql.namespace_matcher(t.target.namespace for t in targets)
        w = self.rate_window_s
        queries = {
            "request_rate": promql.request_rates(m, w),
            "queue_latency_ms": promql.queue_latency_ms(m, w),
            "mean_batch_size": promql.mean_batch_size(m, w),
            "gpu_util": promql.gpu_util(m),
            "cold_start_s": promql.cold_start_s(m),
            "replicas": promql.replicas(m),
            "freshness": promql.freshness(m),
        }
        for bw in sorted({t.provisioning.burst_window_s for t in targets}):
            queries[f"burst_rate@{bw:g}"] = promql.arrival_rate(m, max(bw, 2.0 * self.scrape_interval_s))
        for q in sorted({t.slo.latency_quantile for t in targets}):
            queries[f"latency_ms@{q:g}"] = promql.latency_ms(m, q, w)
        for slo_ms in sorted({t.slo.latency_ms for t in targets}):
            queries[f"slo_attainment@{slo_ms:g}"] = promql.slo_attainment_buckets(m, slo_ms, w)
        multi = [t for t in targets if len(t.target.model_names) > 1]
        if multi:  # multi-model servers: batch queue and GPU per pod (sources/multimodel.py)
            queries.update(_multi_model_queries(promql.namespace_matcher(t.target.namespace for t in multi), w))
        pod_queries = self._pod_queries(targets)
        ans = self._run({**queries, **pod_queries}, now_s)  # one wave, one budget, per tick
        self._pod_answers = (now_s, _names(targets), {n: ans.pop(n) for n in pod_queries})
        attain_buckets: dict[str, dict[tuple[str, str], list[tuple[float, float]]]] = {}
        for name, a in ans.items():
            if name.startswith("slo_attainment@"):
                per: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
                for (ns_, model_, le_), v in _index(a, ("namespace", "model_name", "le")).items():
                    per[(ns_, model_)].append((float(le_), v))
                attain_buckets[name] = per

        by_model: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for (ns_, model_, status_), v in _index(ans["request_rate"], ("namespace", "model_name", "status")).items():
            by_model[(ns_, model_)][status_] = v
        # kept apart: a model and its Deployment often share a name
        fresh_model = _index(ans["freshness"], ("namespace", "model_name"))
        fresh_kube = _index(ans["freshness"], ("namespace", "deployment"))
        reps = _index(ans["replicas"], ("__name__", "namespace", "deployment"))
        cold = _cold_by_deployment(ans["cold_start_s"])
        model_idx = {
            name: _index(a, ("namespace", "model_name"))
            for name, a in ans.items()
            if name not in ("request_rate", "replicas", "freshness", "cold_start_s")
            and name not in attain_buckets
            and not name.startswith("mm_")
        }
        problems: dict[tuple[str, SignalStatus], list[str]] = defaultdict(list)
        out: dict[TargetKey, Observation] = {}
        per_model: dict[TargetKey, dict[str, Observation]] = defaultdict(dict)
        for spec, model in ((t, mo) for t in targets for mo in t.target.model_names):
            key = target_key(spec)
            ns, dep = spec.target.namespace, spec.target.deployment
            stale = _stale(fresh_model, (ns, model), spec.provisioning.stale_after_s, now_s)
            # a multi-model target: problems name the model; per-Deployment ones are logged once
            one = len(spec.target.model_names) == 1
            label, first = (str(key), True) if one else (f"{key} [{model}]", model == spec.target.model_names[0])

            def sig(
                name: str,
                query: str,
                label: str = label,
                mk: tuple[str, str] = (ns, model),
                stale: str = stale,
                report: bool = True,
            ) -> Signal:
                s = _plausible(name, _signal(ans[query], model_idx[query].get(mk), stale))
                if not s.ok and report:
                    problems[(name, s.status)].append(f"{label} ({s.detail})")
                return s

            names = ("request_rate_rps", "error_rate_rps", "rejected_rps")
            rates = tuple(
                _plausible(n, r)
                for n, r in zip(names, _rates(ans["request_rate"], by_model, ns, model, stale), strict=True)
            )
            for name, s in zip(("request_rate_rps", "error_rate_rps", "rejected_rps"), rates, strict=True):
                if not s.ok:
                    problems[(name, s.status)].append(f"{label} ({s.detail})")
            kube_stale = _stale(fresh_kube, (ns, dep), spec.provisioning.stale_after_s, now_s)
            current, ready, total = (
                _int(reps, n, ns, dep, kube_stale) for n in (promql.KSM_SPEC, promql.KSM_READY, promql.KSM_STATUS)
            )
            if current is None and first:
                problems[("replicas", SignalStatus.MISSING)].append(
                    f"{key} (kube-state-metrics: {kube_stale or 'no series'})"
                )
            att_name = f"slo_attainment@{spec.slo.latency_ms:g}"
            att = _attainment(ans[att_name], attain_buckets[att_name].get((ns, model)), spec.slo.latency_ms, stale)
            if not att.ok:
                problems[("slo_attainment", att.status)].append(f"{label} ({att.detail})")
            cs = _plausible("cold_start_s", _cold_signal(ans["cold_start_s"], cold.get((ns, dep))))
            if not cs.ok and first:
                problems[("cold_start_s", cs.status)].append(f"{key} ({cs.detail})")
            out[key] = per_model[key][model] = Observation(
                time_s=now_s,
                request_rate_rps=rates[0],
                error_rate_rps=rates[1],
                rejected_rps=rates[2],
                burst_rate_rps=sig("burst_rate_rps", f"burst_rate@{spec.provisioning.burst_window_s:g}"),
                latency_ms=sig("latency_ms", f"latency_ms@{spec.slo.latency_quantile:g}"),
                slo_attainment=att,
                # multi-model pods are not joined per model: per pod below (`_per_pod_signals`)
                queue_latency_ms=sig("queue_latency_ms", "queue_latency_ms", report=one),
                mean_batch_size=sig("mean_batch_size", "mean_batch_size", report=one),
                gpu_util=sig("gpu_util", "gpu_util", report=one),
                cold_start_s=cs,
                current_replicas=current,
                ready_replicas=ready,
                pending_replicas=None if total is None or ready is None else max(0, total - ready),
            )
        for spec in multi:
            key = target_key(spec)
            out[key] = o = multimodel.combine(per_model[key], _per_pod_signals(ans, spec, out[key]))
            for name in ("queue_latency_ms", "mean_batch_size", "gpu_util"):
                if not (s := getattr(o, name)).ok:
                    problems[(name, s.status)].append(f"{key} ({s.detail})")
        self._log_problems(problems)
        return out

    def _log_problems(self, problems: dict[tuple[str, SignalStatus], list[str]]) -> None:
        """One line per (signal, state) naming the targets: WARNING when the set of affected targets
        changed (or every `REPEAT_WARNING_EVERY` ticks while it persists), DEBUG otherwise, so a
        cluster without GPUs does not log the same line every tick."""
        seen: dict[tuple[str, SignalStatus], tuple[frozenset[str], int]] = {}
        for (name, status), where in sorted(problems.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
            targets = frozenset(w.split(" ", 1)[0] for w in where)
            prev = self._logged.get((name, status))
            repeats = prev[1] + 1 if prev is not None and prev[0] == targets else 0
            seen[(name, status)] = (targets, repeats)
            level = logging.WARNING if repeats % REPEAT_WARNING_EVERY == 0 else logging.DEBUG
            more = f" and {len(where) - 10} more" if len(where) > 10 else ""
            log.log(
                level,
                "signal %s is %s for %d targets: %s%s",
                name,
                status.value,
                len(where),
                "; ".join(where[:10]),
                more,
            )
        for gone in set(self._logged) - set(seen):
            log.info("signal %s is no longer %s for any target", gone[0], gone[1].value)
        self._logged = seen



    # ------------------------------------------------------------------ per pod
    def _pod_queries(self, targets: Sequence[ServingAutoscalerSpec]) -> dict[str, str]:
        m = promql.namespace_matcher(t.target.namespace for t in targets)
        w = self.rate_window_s
        queries = {"pod_rate": promql.pod_request_rate(m, w), "pod_batch": promql.pod_batch_size(m, w)}
        for q in sorted({t.slo.latency_quantile for t in targets}):
            queries[f"pod_latency@{q:g}"] = promql.pod_latency_ms(m, q, w)
        return queries

    def observe_pods(
        self, targets: Sequence[ServingAutoscalerSpec], now_s: float
    ) -> dict[TargetKey, tuple[PodSignals, ...]]:
        if not targets:
            return {}
        pre = self._pod_answers
        if pre is not None and pre[0] == now_s and pre[1] == _names(targets):
            ans = pre[2]  # sent with this tick's observe(): no second wave
        else:
            ans = self._run(self._pod_queries(targets), now_s)
        rate = _index(ans["pod_rate"], ("namespace", "model_name", "pod"))
        batch = _index(ans["pod_batch"], ("namespace", "pod"))
        lats = {
            n: _index(a, ("namespace", "model_name", "pod")) for n, a in ans.items() if n.startswith("pod_latency@")
        }
        pods_of: dict[tuple[str, str], list[str]] = defaultdict(list)
        for n, mo, p in rate:
            pods_of[(n, mo)].append(p)
        out: dict[TargetKey, tuple[PodSignals, ...]] = {}
        for spec in targets:
            ns, models = spec.target.namespace, spec.target.model_names
            lat = lats[f"pod_latency@{spec.slo.latency_quantile:g}"]
            pods = sorted({p for model in models for p in pods_of.get((ns, model), ())})
            mbs = spec.batching.initial.max_batch_size
            out[target_key(spec)] = tuple(
                PodSignals(
                    pod=p,
                    # a multi-model pod: its models' rates add up, its latency is the worst model's
                    request_rate_rps=_total(_finite(rate.get((ns, mo, p))) for mo in models),
                    latency_ms=_worst(_finite(lat.get((ns, mo, p))) for mo in models),
                    batch_fill=None if (b := _finite(batch.get((ns, p)))) is None else b / mbs,
                    time_s=now_s,
                )
                for p in pods
            )
        return out


# ---------------------------------------------------------------------- helpers
def _names(targets: Sequence[ServingAutoscalerSpec]) -> tuple[str, ...]:
    return tuple(sorted(f"{t.target.namespace}/{t.target.deployment}" for t in targets))


def _value(item: dict[str, Any]) -> float:
    return float(item["value"][1])


def _index(a: _Answer | Result | None, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    res = a.result if isinstance(a, _Answer) else a
    out: dict[tuple[str, ...], float] = {}
    for item in res or ():
        met = item.get("metric", {})
        if all(lb in met for lb in labels):
            out[tuple(met[lb] for lb in labels)] = _value(item)
    return out


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _total(values: Iterable[float | None]) -> float | None:
    """The sum of the known values (one value: itself), None when none is known."""
    known = [v for v in values if v is not None]
    return None if not known else known[0] if len(known) == 1 else math.fsum(known)


def _worst(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _multi_model_queries(m: str, w: float) -> dict[str, str]:
    out = {"mm_gpu": promql.pod_gpu_util(m)}
    for short, metric in (("queue", promql.QUEUING_LATENCY), ("batch", promql.PROCESSED_BATCH_SIZE)):
        for part in ("sum", "count"):
            out[f"mm_{short}_{part}"] = promql.pod_rate_sum(f"{metric}_{part}", m, w)
    return out


def _per_pod_signals(ans: dict[str, _Answer], spec: ServingAutoscalerSpec, base: Observation) -> Observation:
    """`base` with queue wait, batch size and GPU busy averaged over the Deployment's pods, whose
    names are `<deployment>-<replicaset hash>-<pod id>` (as for cold start)."""
    ns, dep = spec.target.namespace, spec.target.deployment

    def per_pod(name: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for (ns_, pod), v in _index(ans[name], ("namespace", "pod")).items():
            mt = _POD_SUFFIX.match(pod)
            if ns_ == ns and mt is not None and mt["deploy"] == dep:
                out[pod] = v
        return out

    def failed(*names: str) -> Signal | None:
        bad = next((ans[n] for n in names if ans[n].result is None), None)
        return None if bad is None else Signal.missing(SignalStatus.ERROR, f"query failed: {bad.error}")

    pods = sorted({p for n in ans if n.startswith("mm_") for p in per_pod(n)})
    ql = failed("mm_queue_sum", "mm_queue_count") or multimodel.pod_means(
        per_pod("mm_queue_sum"), per_pod("mm_queue_count"), pods, "batch queue", 1e-3
    )
    bs = failed("mm_batch_sum", "mm_batch_count") or multimodel.pod_means(
        per_pod("mm_batch_sum"), per_pod("mm_batch_count"), pods, "processed batch size"
    )
    gpu = failed("mm_gpu") or multimodel.pod_average(per_pod("mm_gpu"), pods, "GPU utilization")
    return replace(
        base,
        queue_latency_ms=_plausible("queue_latency_ms", ql),
        mean_batch_size=_plausible("mean_batch_size", bs),
        gpu_util=_plausible("gpu_util", gpu),
    )


def _stale(fresh: dict[tuple[str, ...], float], key: tuple[str, str], stale_after_s: float, now_s: float) -> str:
    t = fresh.get(key)
    if t is not None and now_s - t > stale_after_s:
        return f"newest sample {now_s - t:.0f}s old (> {stale_after_s:g}s)"
    return ""


def _signal(a: _Answer, v: float | None, stale: str) -> Signal:
    if a.result is None:
        return Signal.missing(SignalStatus.ERROR, f"query failed: {a.error}")
    if stale:  # the model has series, but its newest sample is too old to trust
        return Signal.missing(SignalStatus.STALE, stale)
    if v is None:
        return Signal.missing(SignalStatus.MISSING, "no series")
    return Signal.of(v)


def _rates(
    a: _Answer, by_model: dict[tuple[str, str], dict[str, float]], ns: str, model: str, stale: str
) -> tuple[Signal, Signal, Signal]:
    """(OK, errors, rejected) responses/s; a status never seen is 0 once the model has any series."""
    if a.result is None:
        s = Signal.missing(SignalStatus.ERROR, f"query failed: {a.error}")
        return s, s, s
    if stale:
        s = Signal.missing(SignalStatus.STALE, stale)
        return s, s, s
    statuses = by_model.get((ns, model))
    if not statuses:
        s = Signal.missing(SignalStatus.MISSING, "no request_count series")
        return s, s, s
    ok = statuses.get("OK", 0.0)
    rej = statuses.get("UNAVAILABLE", 0.0)
    err = sum(v for st, v in statuses.items() if st not in ("OK", "UNAVAILABLE"))
    return Signal.of(ok), Signal.of(err), Signal.of(rej)


def _attainment(a: _Answer, buckets: list[tuple[float, float]] | None, slo_ms: float, stale: str) -> Signal:
    if a.result is None:
        return Signal.missing(SignalStatus.ERROR, f"query failed: {a.error}")
    if stale:
        return Signal.missing(SignalStatus.STALE, stale)
    if not buckets:
        return Signal.missing(SignalStatus.MISSING, "no request_latency buckets around the SLO")
    return Signal.of(fraction_at_or_below(slo_ms * 1000.0, buckets), f"of served requests within {slo_ms:g} ms")


def _plausible(name: str, s: Signal) -> Signal:
    """`s`, or NAN when its value lies outside `BOUNDS[name]`."""
    lo, hi = BOUNDS[name]
    if s.ok and s.value is not None and not lo <= s.value <= hi:
        return Signal.missing(SignalStatus.NAN, f"implausible value {s.value:.6g} (expected {lo:g}..{hi:g})")
    return s


def _int(reps: dict[tuple[str, ...], float], name: str, ns: str, dep: str, stale: str) -> int | None:
    v = reps.get((name, ns, dep))
    lo, hi = BOUNDS["replicas"]
    if v is None or stale or not math.isfinite(v) or not lo <= v <= hi:
        return None
    return int(v)


def _cold_by_deployment(a: _Answer) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for item in a.result or ():
        met = item.get("metric", {})
        mt = _POD_SUFFIX.match(met.get("pod", ""))
        if mt and "namespace" in met:
            out[(met["namespace"], mt["deploy"])].append(_value(item))
    return out


def _cold_signal(a: _Answer, values: list[float] | None) -> Signal:
    if a.result is None:
        return Signal.missing(SignalStatus.ERROR, f"query failed: {a.error}")
    if not values:
        return Signal.missing(SignalStatus.MISSING, "no ready pod with kube_pod_created/ready_time")
    vals = sorted(values)
    return Signal.of(vals[len(vals) // 2], f"median pod start -> Ready over {len(vals)} pods")
