"""ScrapeSource: the direct TF Serving scrape fallback for clusters without Prometheus.

Owns reading `/monitoring/prometheus/metrics` from every pod of every target and doing
Prometheus' arithmetic itself: per-pod snapshots are kept for the rate window, rates are
counter increases (with reset handling) over time, the latency quantile is
`histogram_quantile` over summed bucket increases (µs → ms), queue wait and batch size are
Δsum/Δcount. Pod endpoints (pod name → base URL) are set per target at runtime as replicas start
and stop. TF Serving's names start with `:`; prometheus_client's parser accepts them but renames
counter samples to `<name>_total`, which `_parse` undoes. There is no GPU metric on this path:
`gpu_util` is MISSING with a reason. Failures are explicit signals, never zeros. A multi-model
server's models are observed one by one and combined like the Prometheus source's
(`sources/multimodel.py`).
"""

from __future__ import annotations

import logging
import math
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from autoscaler.core.store import PodSignals
from autoscaler.core.types import Observation, Signal, SignalStatus, TargetKey
from autoscaler.sources import multimodel
from autoscaler.sources.base import target_key
from autoscaler.sources.histogram import fraction_at_or_below, histogram_quantile
from autoscaler.spec.types import ServingAutoscalerSpec

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
_RC = ":tensorflow:serving:request_count"
_LAT = ":tensorflow:serving:request_latency"
_QL = ":tensorflow:serving:batching_session:queuing_latency"
_PBS = ":tensorflow:serving:batching_session:processed_batch_size"
_LOAD_OK = ":tensorflow:cc:saved_model:load_attempt_count"
_LOAD_US = ":tensorflow:cc:saved_model:load_latency"
_WARMUP = ":tensorflow:serving:model_warmup_latency"

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def parse_tf_serving_page(text: str) -> Samples:
    """(sample name, sorted labels) -> value, with counters under TF Serving's own names."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name
            if fam.type == "counter" and name == fam.name + "_total" and not fam.name.endswith("_total"):
                name = fam.name  # the parser appends _total; TF Serving's counters have none
            out[(name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


@dataclass(frozen=True)
class _Snap:
    time_s: float
    samples: Samples


def _sum(s: Samples, name: str, **match: str) -> float:
    return sum(v for (n, lab), v in s.items() if n == name and all((k, want) in lab for k, want in match.items()))


def _increase(snaps: Sequence[_Snap], name: str, **match: str) -> float:
    """Counter increase across consecutive snapshots, a drop counting as a reset (like rate())."""
    inc = 0.0
    for a, b in zip(snaps, snaps[1:], strict=False):
        va, vb = _sum(a.samples, name, **match), _sum(b.samples, name, **match)
        inc += vb - va if vb >= va else vb
    return inc


def _buckets_increase(snaps: Sequence[_Snap], name: str, model: str | None = None) -> dict[float, float]:
    """Bucket increases of a histogram over the window (all models, or `model`'s only)."""
    out: dict[float, float] = {}
    first, last = snaps[0].samples, snaps[-1].samples
    for (n, lab), v in last.items():
        if n != name + "_bucket" or (model is not None and ("model_name", model) not in lab):
            continue
        le = float(dict(lab)["le"])
        prev = first.get((n, lab), 0.0)
        out[le] = out.get(le, 0.0) + (v - prev if v >= prev else v)
    return out


class ScrapeSource:
    """MetricSource + PodMetricSource reading TF Serving pods directly."""

    def __init__(
        self,
        endpoints: Mapping[TargetKey, Mapping[str, str]] | None = None,
        *,
        timeout_s: float = 2.0,
        rate_window_s: float = 60.0,
        max_workers: int = 16,
    ) -> None:
        self._endpoints: dict[TargetKey, dict[str, str]] = {k: dict(v) for k, v in (endpoints or {}).items()}
        self.timeout_s = timeout_s
        self.rate_window_s = rate_window_s
        self._snaps: dict[tuple[TargetKey, str], deque[_Snap]] = {}
        self._errors: dict[tuple[TargetKey, str], str] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tfs-scrape")

    def set_endpoints(self, target: TargetKey, pods: Mapping[str, str]) -> None:
        """Replace the pod name -> base URL map of a target (pods gone are forgotten)."""
        self._endpoints[target] = dict(pods)
        for key in [k for k in self._snaps if k[0] == target and k[1] not in pods]:
            del self._snaps[key]

    def endpoints(self, target: TargetKey) -> dict[str, str]:
        return dict(self._endpoints.get(target, {}))

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ scraping
    def _fetch(self, url: str) -> str:
        with urllib.request.urlopen(url.rstrip("/") + METRICS_PATH, timeout=self.timeout_s) as resp:
            body: bytes = resp.read()
        return body.decode("utf-8")

    def scrape(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> None:
        """Scrape every pod of `targets` concurrently and append the snapshots."""
        jobs = []
        for spec in targets:
            key = target_key(spec)
            for pod, url in self._endpoints.get(key, {}).items():
                jobs.append(((key, pod), self._pool.submit(self._fetch, url)))
        for pk, fut in jobs:
            try:
                samples = parse_tf_serving_page(fut.result())
            except Exception as e:  # network, HTTP or parse failure: recorded, reported per signal
                self._errors[pk] = f"{type(e).__name__}: {e}"
                log.warning("scrape of %s pod %s failed: %s", pk[0], pk[1], self._errors[pk])
                continue
            self._errors.pop(pk, None)
            dq = self._snaps.setdefault(pk, deque())
            dq.append(_Snap(now_s, samples))
            while len(dq) > 2 and dq[1].time_s <= now_s - self.rate_window_s:
                dq.popleft()

    # ------------------------------------------------------------------ signals
    def _window(self, pk: tuple[TargetKey, str], window_s: float, now_s: float) -> list[_Snap] | None:
        """Snapshots from the newest one back to the latest one at least `window_s` old."""
        dq = self._snaps.get(pk)
        if not dq or len(dq) < 2 or pk in self._errors or dq[-1].time_s < now_s - self.rate_window_s:
            return None
        snaps = list(dq)
        start = 0
        for i, s in enumerate(snaps[:-1]):
            if s.time_s <= now_s - window_s:
                start = i
        return snaps[start:]

    def observe(self, targets: Sequence[ServingAutoscalerSpec], now_s: float) -> dict[TargetKey, Observation]:
        self.scrape(targets, now_s)
        return {target_key(spec): self._combined(spec, now_s) for spec in targets}

    def _combined(self, spec: ServingAutoscalerSpec, now_s: float) -> Observation:
        """A multi-model server: one observation per model, combined (sources/multimodel.py)."""
        names = spec.target.model_names
        if len(names) == 1:
            return self._observation(spec, now_s)
        per = {m: self._observation(spec, now_s, only_model=m) for m in names}
        return multimodel.combine(per, per[names[0]])



    def _observation(self, spec: ServingAutoscalerSpec, now_s: float, only_model: str | None = None) -> Observation:
        """`only_model`: one model of a multi-model server (its latency buckets only)."""
        key = target_key(spec)
        pods = self._endpoints.get(key, {})
        model = only_model or spec.target.model_name
        if not pods:
            sig = Signal.missing(SignalStatus.MISSING, f"{key}: no pod endpoints configured")
            return _all(now_s, sig, current=0, ready=0)
        failed = [p for p in pods if (key, p) in self._errors]
        if len(failed) == len(pods):
            detail = f"{key}: every pod scrape failed ({self._errors[(key, failed[0])]})"
            log.error("signal *: %s", detail)
            return _all(now_s, Signal.missing(SignalStatus.ERROR, detail), current=len(pods), ready=0)
        wins = [w for p in pods if (w := self._window((key, p), self.rate_window_s, now_s)) is not None]
        bursts = [w for p in pods if (w := self._window((key, p), spec.provisioning.burst_window_s, now_s))]
        note = f" ({len(failed)} of {len(pods)} pods unreachable)" if failed else ""
        ready = sum(1 for p in pods if (key, p) not in self._errors and self._loaded(key, p))
        if not wins:
            sig = Signal.missing(SignalStatus.MISSING, f"{key}: need two scrapes per pod for rates{note}")
            return _all(now_s, sig, current=len(pods), ready=ready)

        def rate(ws: list[list[_Snap]], **match: str) -> float:
            return sum(_increase(w, _RC, model_name=model, **match) / (w[-1].time_s - w[0].time_s) for w in ws)

        def error_rate(ws: list[list[_Snap]]) -> float:
            """Non-OK, non-UNAVAILABLE requests/s: subtract whole counter increases per pod, then divide
            (subtracting the divided rates leaves float residue that would read as a tiny error rate)."""
            out = 0.0
            for w in ws:
                n = _increase(w, _RC, model_name=model)
                n -= _increase(w, _RC, model_name=model, status="OK")
                n -= _increase(w, _RC, model_name=model, status="UNAVAILABLE")
                out += max(0.0, n) / (w[-1].time_s - w[0].time_s)
            return out

        ok = rate(wins, status="OK")
        rejected = rate(wins, status="UNAVAILABLE")
        burst = rate(bursts) if bursts else math.nan
        buckets: dict[float, float] = {}
        for w in wins:
            for le, c in _buckets_increase(w, _LAT, only_model).items():
                buckets[le] = buckets.get(le, 0.0) + c
        lat_us = histogram_quantile(spec.slo.latency_quantile, buckets.items())
        within = fraction_at_or_below(spec.slo.latency_ms * 1000.0, buckets.items())
        ql = _ratio(wins, _QL)
        bs = _ratio(wins, _PBS)
        cold = self._cold_start_s(key, pods)
        return Observation(
            time_s=now_s,
            request_rate_rps=Signal.of(ok, f"direct scrape of {len(wins)} pods{note}"),
            burst_rate_rps=Signal.of(burst, f"direct scrape, {spec.provisioning.burst_window_s:g}s window"),
            error_rate_rps=Signal.of(error_rate(wins)),
            rejected_rps=Signal.of(rejected),
            latency_ms=_nan_is_missing(lat_us / 1e3, "no successful request in the window"),
            slo_attainment=_nan_is_missing(within, "no successful request in the window"),
            queue_latency_ms=_nan_is_missing(ql / 1e3, "no batch-queue samples in the window"),
            mean_batch_size=_nan_is_missing(bs, "no batch executed in the window"),
            gpu_util=Signal.missing(SignalStatus.MISSING, "direct scrape has no GPU (DCGM) metrics"),
            cold_start_s=cold,
            current_replicas=len(pods),
            ready_replicas=ready,
            pending_replicas=len(pods) - ready,
        )

    def _loaded(self, key: TargetKey, pod: str) -> bool:
        dq = self._snaps.get((key, pod))
        return dq is not None and len(dq) > 0 and _sum(dq[-1].samples, _LOAD_OK, status="success") > 0

    def _cold_start_s(self, key: TargetKey, pods: Mapping[str, str]) -> Signal:
        vals = []
        for p in pods:
            dq = self._snaps.get((key, p))
            if dq:
                s = dq[-1].samples
                n = _sum(s, _LOAD_OK, status="success")
                if n > 0:
                    vals.append((_sum(s, _LOAD_US) + _sum(s, _WARMUP + "_sum")) / n / 1e6)
        if not vals:
            return Signal.missing(SignalStatus.MISSING, "no model load recorded by TF Serving")
        return Signal.of(sum(vals) / len(vals), "TF Serving model load + warmup only (no image pull)")

    def observe_pods(
        self, targets: Sequence[ServingAutoscalerSpec], now_s: float, *, scrape: bool = False
    ) -> dict[TargetKey, tuple[PodSignals, ...]]:
        """Per-pod signals from the snapshots already taken (set `scrape=True` to scrape first)."""
        if scrape:
            self.scrape(targets, now_s)
        out: dict[TargetKey, tuple[PodSignals, ...]] = {}
        for spec in targets:
            key = target_key(spec)
            pods = []
            for p in sorted(self._endpoints.get(key, {})):
                w = self._window((key, p), self.rate_window_s, now_s)
                if w is None:
                    pods.append(PodSignals(pod=p, time_s=now_s))
                    continue
                dt = w[-1].time_s - w[0].time_s
                names = spec.target.model_names
                rps = sum(_increase(w, _RC, model_name=m, status="OK") for m in names) / dt
                if len(names) == 1:
                    lat = histogram_quantile(spec.slo.latency_quantile, _buckets_increase(w, _LAT).items()) / 1e3
                else:  # the worst model's (sources/multimodel.py)
                    q = spec.slo.latency_quantile
                    lats = [histogram_quantile(q, _buckets_increase(w, _LAT, m).items()) / 1e3 for m in names]
                    lat = max((x for x in lats if math.isfinite(x)), default=math.nan)
                bs = _ratio([w], _PBS)
                fill = bs / spec.batching.initial.max_batch_size if math.isfinite(bs) else None
                pods.append(
                    PodSignals(
                        pod=p,
                        request_rate_rps=rps,
                        latency_ms=lat if math.isfinite(lat) else None,
                        batch_fill=fill,
                        time_s=now_s,
                    )
                )
            out[key] = tuple(pods)
        return out


def _ratio(wins: Sequence[Sequence[_Snap]], name: str) -> float:
    s = sum(_increase(w, name + "_sum") for w in wins)
    c = sum(_increase(w, name + "_count") for w in wins)
    return s / c if c > 0 else math.nan


def _nan_is_missing(v: float, why: str) -> Signal:
    return Signal.missing(SignalStatus.MISSING, why) if math.isnan(v) else Signal.of(v)


def _all(now_s: float, sig: Signal, *, current: int | None, ready: int | None) -> Observation:
    return Observation(
        time_s=now_s,
        request_rate_rps=sig,
        burst_rate_rps=sig,
        error_rate_rps=sig,
        rejected_rps=sig,
        latency_ms=sig,
        slo_attainment=sig,
        queue_latency_ms=sig,
        mean_batch_size=sig,
        gpu_util=sig,
        cold_start_s=sig,
        current_replicas=current,
        ready_replicas=ready,
        pending_replicas=None if current is None or ready is None else current - ready,
    )
