"""Per-second record of one replay: the simulator's ground truth, second by second.

Owned separately from the engine so that the metrics pipeline (which may only read the past),
the report writer and the tests all read the same arrays. Index `i` is second `i - preroll_s`
of the replay window: the first `preroll_s` seconds are a warm-up before the window (filled from
the trace's history) that gives the Prometheus counters and rate windows data at t = 0; they
are excluded from every summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from autoscaler.core.types import FloatArray

# columns written to timeline.csv, in order (t_s is added in front)
CSV_COLUMNS = (
    "arrivals",
    "served",
    "rejected",
    "within_slo",
    "ready_replicas",
    "pods",
    "desired_replicas",
    "latency_slo_q_ms",
    "p50_ms",
    "p99_ms",
    "gpu_util",
    "mean_batch",
    "forecast_rps",
    "forecast_lo_rps",
    "forecast_hi_rps",
)


_SCALAR_SPAN = 16  # close() spans up to this long take the scalar path


@dataclass
class Timeline:
    """Preallocated per-second arrays; `filled` is the first index not yet simulated."""

    preroll_s: int
    n_s: int  # seconds in the replay window
    start_s: float  # absolute trace time of window second 0
    arrivals: FloatArray = field(init=False)
    served: FloatArray = field(init=False)
    rejected: FloatArray = field(init=False)
    within_slo: FloatArray = field(init=False)
    ready: FloatArray = field(init=False)
    pods: FloatArray = field(init=False)  # pods that exist (Pending + Running): what is paid for
    desired: FloatArray = field(init=False)
    latency_q_ms: FloatArray = field(init=False)  # latency at the SLO quantile (rejected = late)
    served_latency_q_ms: FloatArray = field(init=False)  # same over served requests (TF Serving's view)
    p50_ms: FloatArray = field(init=False)
    p99_ms: FloatArray = field(init=False)
    mean_latency_ms: FloatArray = field(init=False)
    busy: FloatArray = field(init=False)  # mean busy fraction of the ready pods (GPU utilization)
    mean_batch: FloatArray = field(init=False)
    forecast: FloatArray = field(init=False)
    forecast_lo: FloatArray = field(init=False)
    forecast_hi: FloatArray = field(init=False)
    # cum_share[i] = sum over seconds < i of served / ready: the request counter of a pod that was
    # ready all along (load is balanced evenly over ready pods)
    cum_share: FloatArray = field(init=False)
    cum_arrivals: FloatArray = field(init=False)  # cumulative sums (index i = seconds < i)
    cum_served: FloatArray = field(init=False)
    cum_rejected: FloatArray = field(init=False)
    cum_ready: FloatArray = field(init=False)
    filled: int = 0
    # seconds whose load is unknown (a masked trace gap): served at the bridged rate, missing to the
    # policies' metrics, left out of the scored metrics; `has_gaps` lets hot paths skip the checks
    gap: npt.NDArray[np.bool_] = field(init=False)
    has_gaps: bool = False

    def __post_init__(self) -> None:
        n = self.preroll_s + self.n_s
        for name in (
            "arrivals",
            "served",
            "rejected",
            "within_slo",
            "ready",
            "pods",
            "desired",
            "busy",
        ):
            setattr(self, name, np.zeros(n))
        for name in (
            "latency_q_ms",
            "served_latency_q_ms",
            "p50_ms",
            "p99_ms",
            "mean_latency_ms",
            "mean_batch",
            "forecast",
            "forecast_lo",
            "forecast_hi",
        ):
            setattr(self, name, np.full(n, np.nan))
        self.gap = np.zeros(n, dtype=bool)
        # one block, closed with one cumsum; the named columns are views of its rows
        self._cum = np.zeros((5, n + 1))
        self.cum_share, self.cum_arrivals, self.cum_served, self.cum_rejected, self.cum_ready = self._cum

    @property
    def size(self) -> int:
        return self.preroll_s + self.n_s

    def index(self, t_s: int) -> int:
        """Array index of window second `t_s` (negative t_s are pre-roll seconds)."""
        return t_s + self.preroll_s

    def close(self, lo: int, hi: int) -> None:
        """Seconds [lo, hi) (indices) are simulated: extend the cumulative per-pod counter.

        Each cumulative column is a running sum from its value at `lo` (np.cumsum adds strictly
        left to right), so closing [a, c) at once or as [a, b) then [b, c) gives the same bits:
        the engine may serve ahead in long spans and still match a tick-by-tick replay exactly.
        """
        if hi - lo <= _SCALAR_SPAN:
            self._close_scalar(lo, hi)
            return
        ready = self.ready[lo:hi]
        block = np.zeros((5, hi - lo))  # rows in the order of `_cum`
        np.divide(self.served[lo:hi], ready, out=block[0], where=ready > 0)
        block[1] = self.arrivals[lo:hi]
        block[2] = self.served[lo:hi]
        block[3] = self.rejected[lo:hi]
        block[4] = ready
        block[:, 0] += self._cum[:, lo]
        np.cumsum(block, axis=1, out=self._cum[:, lo + 1 : hi + 1])
        self.filled = hi

    def _close_scalar(self, lo: int, hi: int) -> None:
        """`close()` for a few seconds without numpy temporaries (a policy deciding every few
        seconds closes that many at a time): the same left-to-right running sums, bit-identical."""
        c_share, c_arr, c_srv, c_rej, c_rdy = (
            self.cum_share, self.cum_arrivals, self.cum_served, self.cum_rejected, self.cum_ready,
        )  # fmt: skip
        p_share, p_arr, p_srv, p_rej, p_rdy = (
            float(c_share[lo]), float(c_arr[lo]), float(c_srv[lo]), float(c_rej[lo]), float(c_rdy[lo]),
        )  # fmt: skip
        ready = self.ready[lo:hi].tolist()
        served = self.served[lo:hi].tolist()
        arrivals = self.arrivals[lo:hi].tolist()
        rejected = self.rejected[lo:hi].tolist()
        out_share, out_arr, out_srv, out_rej, out_rdy = [], [], [], [], []
        for r, sv, a, rj in zip(ready, served, arrivals, rejected, strict=True):
            p_share += sv / r if r > 0 else 0.0
            p_arr += a
            p_srv += sv
            p_rej += rj
            p_rdy += r
            out_share.append(p_share)
            out_arr.append(p_arr)
            out_srv.append(p_srv)
            out_rej.append(p_rej)
            out_rdy.append(p_rdy)
        c_share[lo + 1 : hi + 1] = out_share
        c_arr[lo + 1 : hi + 1] = out_arr
        c_srv[lo + 1 : hi + 1] = out_srv
        c_rej[lo + 1 : hi + 1] = out_rej
        c_rdy[lo + 1 : hi + 1] = out_rdy
        self.filled = hi

    def window(self) -> slice:
        return slice(self.preroll_s, self.preroll_s + self.n_s)
