"""Rate scaling by superposition: the expected per-second load of k phase-shifted copies of a trace.

Owned apart from `workload.py` (whose `load_trace(..., superpose_s=...)` calls `superposed_trace`) because
it is the one piece of trace arithmetic that works on the *whole* file before any window is cut.

Scaling a sparse trace by k as "k independent copies of the logged user population, their phases spread
uniformly over `superpose_s` seconds" gives, in expectation, k times the centred moving average of the
per-second counts over `superpose_s` seconds. Computing it on the whole file before windowing makes a
window and a separately loaded history window line up exactly. Masked gaps (NaN) stay NaN and do not
count as zero load for their neighbours: the average is over the valid seconds only.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from autoscaler.core.types import FloatArray
from autoscaler.sim.traces import REQUEST_HEADER, Trace, interval_trace, parse_rows, request_trace, trace_name


def superpose_width(superpose_s: float) -> int:
    """The moving-average width in whole seconds; ValueError unless `superpose_s` is finite and >= 1."""
    if isinstance(superpose_s, bool) or not isinstance(superpose_s, (int, float)):
        raise ValueError(f"superpose_s must be a number of seconds >= 1 (got {superpose_s!r})")
    if not (math.isfinite(superpose_s) and superpose_s >= 1):
        raise ValueError(
            f"superpose_s must be a finite number of seconds >= 1 (got {superpose_s}; omit it to scale by "
            "duplicating requests)"
        )
    return max(1, round(superpose_s))


def centred_moving_average(per_s: FloatArray, width: int) -> FloatArray:
    """Centred moving average over `width` seconds (at the edges: over the part that exists).

    Second i averages seconds [i - width // 2, i - width // 2 + width). NaN seconds are skipped (the
    average is over the valid ones); a NaN second stays NaN, and so does one with no valid neighbour.
    """
    x = np.asarray(per_s, dtype=np.float64)
    n = len(x)
    if n == 0 or width <= 1:
        return x.copy()
    valid = ~np.isnan(x)
    csum = np.concatenate(([0.0], np.cumsum(np.where(valid, x, 0.0))))
    cnt = np.concatenate(([0], np.cumsum(valid, dtype=np.int64)))
    i = np.arange(n)
    lo = np.clip(i - width // 2, 0, n)
    hi = np.clip(i - width // 2 + width, 0, n)
    total = csum[hi] - csum[lo]
    k = cnt[hi] - cnt[lo]
    out = np.full(n, np.nan)
    ok = valid & (k > 0)
    out[ok] = total[ok] / k[ok]
    return out


def superposed_trace(
    p: Path,
    rate_scale: float,
    start_s: float | None,
    duration_s: float | None,
    mask_gaps: bool,
    superpose_s: float,
) -> Trace:
    """The window [start_s, start_s + duration_s) of the superposed trace: a 1 s interval `Trace`."""
    try:
        width = superpose_width(superpose_s)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from None
    st = p.stat()
    first, smooth = _smoothed(p.resolve(), st.st_size, st.st_mtime_ns, mask_gaps, width)
    full_end = first + len(smooth)
    t0 = first if start_s is None else start_s
    if t0 >= full_end or t0 < first:
        raise ValueError(f"{p}: start_s={t0} is outside the trace [{first:g}, {full_end:g}) s")
    k = t0 - first
    if abs(k - round(k)) > 1e-6:
        raise ValueError(f"{p}: start_s={t0} is not on the superposed trace's 1 s grid (expected whole seconds)")
    end = full_end if duration_s is None else min(full_end, t0 + duration_s)
    lo, hi = round(k), math.ceil(end - first - 1e-9)
    return Trace(
        name=trace_name(p),
        source_path=p,
        step_s=1.0,
        t_s=np.arange(hi - lo, dtype=np.float64),
        counts=smooth[lo:hi] * rate_scale,
        timestamps_s=None,
        rate_scale=rate_scale,
        start_s=t0,
        duration_s=float(hi - lo),
        superpose_s=float(superpose_s),
    )


@lru_cache(maxsize=4)
def _smoothed(p: Path, _size: int, _mtime_ns: int, mask_gaps: bool, width: int) -> tuple[float, FloatArray]:
    """(first second, unscaled superposed series of the whole file), cached by file, size and mtime like
    the parse: a scenario loads its window, its history and its scale from the same series."""
    header, data = parse_rows(p)
    if header == REQUEST_HEADER:
        full = request_trace(p, data[:, 0], 1.0, None, None)
    else:
        full = interval_trace(p, data[:, 0], data[:, 1], 1.0, None, None, mask_gaps)
    smooth = centred_moving_average(full.rate_per_second(), width)
    smooth.setflags(write=False)
    return full.start_s, smooth
