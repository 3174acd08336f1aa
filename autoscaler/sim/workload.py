"""Real traffic traces for replay: loading, windowing, rate scaling, gap masking, arrivals.

Owned here because every replay (simulator, benchmarks, `forecast` command, emulator load
generator) must read the shipped traces the same way. Two schemas (simulations/traces/SOURCES.md):

* per request: one column `timestamp_s` (seconds, sorted) -> `Trace.timestamps_s`;
* per interval: columns `t_s,requests` on a fixed grid of `step_s` seconds -> `Trace.counts`.

Either may be gzip- or xz-compressed (`.csv.gz`, `.csv.xz`; detected by the magic bytes). A shipped trace is
found by its name whatever the compression (the installed package xz-compresses the big ones, `sim/shipped.py`).

Times are re-based so the loaded window starts at 0 (`Trace.start_s` keeps the original offset).

Rate scaling (`rate_scale=k`), two methods:

* duplication (default, `superpose_s=None`): interval counts are multiplied by k; per-request traces keep
  every logged request k times (fractional part: seeded thinning), all at the logged instant. Faithful
  when the trace is already busy at the resolution replayed (many requests per second), e.g. the 60 s
  and 600 s aggregates: it keeps the trace's own burst structure.
* superposition (`superpose_s=S`): the trace scaled by k behaves like k independent copies of the logged
  population with phases spread uniformly over S seconds; the window holds its expectation, k times the
  centred S-second moving average of the per-second counts (`sim/superpose.py`), as an interval trace
  with `step_s` = 1. Use it for sparse traces replayed at 1 s (NASA 1 s, under 1 request/s; Azure LLM per
  request): duplicating them turns each logged request into a burst of k requests in one second, load
  quantized in steps of k and most seconds empty, which no k-times-busier real service looks like.
  The smoothing runs on the whole file before the window is cut, so windows line up exactly.

Gap rule (`mask_gaps=True`, interval traces only): the source files fill silent intervals with 0, so a
logging outage looks like "no load". A run of consecutive zero intervals strictly inside the trace and
lasting at least 60 s is a *gap* when, at the mean rate of the surrounding hour (at least 10 intervals
each side), a Poisson process would leave the whole run empty with probability below 1e-6, i.e. the
expected count over the run exceeds ln(1e6) ~ 13.8 requests. Gap intervals become NaN: `rate_per_second()`
reports NaN there and `arrivals()` produces none. Shorter silences are kept as real (web traffic is far
burstier than Poisson at 1 s). On the shipped traces this masks exactly the 10 filled minutes of
WorldCup98 (600 s) and 53 silent stretches of NASA July 1995 (7,980 s at 60 s; 17,200 s at 1 s, where runs
need not align with minutes). Per-request logs contain no filled zeros, so the rule does not apply to them
(the flag is accepted and has no effect).

Replaying a gap (`bridge_gaps`): a gap is unknown load, not idle. The simulator serves the load
interpolated linearly between the known seconds on either side of it (so no policy faces the
trace's return with a cluster shrunk for "no traffic"), reports the gap seconds to the policies as
missing metrics, and leaves them out of every scored metric (`sim/engine.py`, `gap_policy`
"bridged+excluded" in summary.json).

Reading and parsing the files is `sim/traces.py`; this module chooses how a window is scaled.
"""

from __future__ import annotations

import math
from pathlib import Path

from autoscaler.sim.superpose import superposed_trace
from autoscaler.sim.traces import (
    GAP_MIN_S as GAP_MIN_S,
)
from autoscaler.sim.traces import (
    INTERVAL_HEADER as INTERVAL_HEADER,
)
from autoscaler.sim.traces import (
    REQUEST_HEADER as REQUEST_HEADER,
)
from autoscaler.sim.traces import (
    TRACE_SUFFIXES as TRACE_SUFFIXES,
)
from autoscaler.sim.traces import (
    BoolArray as BoolArray,
)
from autoscaler.sim.traces import (
    Trace as Trace,
)
from autoscaler.sim.traces import (
    TraceError as TraceError,
)
from autoscaler.sim.traces import (
    bridge_gaps as bridge_gaps,
)
from autoscaler.sim.traces import (
    check_window,
    interval_trace,
    parse_rows,
    request_trace,
)
from autoscaler.sim.traces import (
    gap_mask as gap_mask,
)
from autoscaler.sim.traces import (
    resolve_trace as resolve_trace,
)
from autoscaler.sim.traces import (
    shipped_traces as shipped_traces,
)


def load_trace(
    path: str | Path,
    *,
    rate_scale: float = 1.0,
    start_s: float | None = None,
    duration_s: float | None = None,
    mask_gaps: bool = False,
    superpose_s: float | None = None,
) -> Trace:
    """Load a trace file (or shipped trace name) and cut the window [start_s, start_s + duration_s).

    `superpose_s=None` scales by duplication; seconds (>= 1) scale by superposition (module docstring).
    """
    p = resolve_trace(path)
    if not (math.isfinite(rate_scale) and rate_scale > 0):
        raise ValueError(f"{p}: rate_scale must be a finite number > 0 (got {rate_scale})")
    check_window(p, start_s, duration_s)
    if superpose_s is not None:
        return superposed_trace(p, rate_scale, start_s, duration_s, mask_gaps, superpose_s)
    header, data = parse_rows(p)
    if header == REQUEST_HEADER:
        return request_trace(p, data[:, 0], rate_scale, start_s, duration_s)
    return interval_trace(p, data[:, 0], data[:, 1], rate_scale, start_s, duration_s, mask_gaps)
