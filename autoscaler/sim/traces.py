"""Trace files: find, read and parse them, and cut a window into a per-second `Trace`.

Owned apart from `workload.py` (which chooses how to scale a trace: duplication here, superposition in
`superpose.py`) so both scalers build on the same parsers without importing each other. Schemas,
compression and the gap rule are described in `workload.py`'s docstring; SOURCES.md lists the files.
Parsing uses numpy's C CSV reader.
"""

from __future__ import annotations

import gzip
import io
import lzma
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from autoscaler.core.types import FloatArray
from autoscaler.sim.shipped import TRACES_DIR

TRACE_SUFFIXES = (".csv", ".csv.gz", ".csv.xz")
REQUEST_HEADER = ("timestamp_s",)
INTERVAL_HEADER = ("t_s", "requests")
GAP_EXPECTED_REQUESTS = math.log(1e6)  # a run is a gap if P(no request | local rate) < 1e-6
GAP_CONTEXT_S = 3_600.0
GAP_CONTEXT_MIN_INTERVALS = 10
GAP_MIN_S = 60.0  # shorter silent stretches are kept as real (web traffic is burstier than Poisson)
BoolArray = npt.NDArray[np.bool_]


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file, the line and what was expected."""


@dataclass(frozen=True)
class Trace:
    """One loaded trace window. Exactly one of `counts` (interval traces) or `timestamps_s` is set.

    `t_s` holds interval start times (interval traces) or the request timestamps (per-request
    traces), seconds from the window start. `counts` are requests per interval *after* `rate_scale`
    (NaN in masked gaps). `timestamps_s` are the original, unscaled request times; the scale is applied
    by `arrivals()` (seeded thinning/duplication) and `rate_per_second()` (expected rate).
    With `superpose_s` set (scaled by superposition, see the module docstring) the trace is always an
    interval trace with `step_s` = 1 whose `counts` are the expected (fractional) requests per second,
    whatever the file's schema.
    """

    name: str
    source_path: Path
    step_s: float | None
    t_s: FloatArray
    counts: FloatArray | None
    timestamps_s: FloatArray | None
    rate_scale: float = 1.0
    start_s: float = 0.0  # where the window starts in the original trace, seconds
    duration_s: float = 0.0  # window length, seconds
    superpose_s: float | None = None  # None: scaled by duplication; else the superposition window, seconds

    @property
    def n_seconds(self) -> int:
        return math.ceil(self.duration_s - 1e-9)

    @property
    def gap_mask(self) -> BoolArray:
        """Per-interval True where the interval is a masked gap (always all-False for request traces)."""
        if self.counts is None:
            return np.zeros(0, dtype=bool)
        return np.isnan(self.counts)

    def rate_per_second(self) -> FloatArray:
        """Offered load in requests/s for every second of the window (NaN inside masked gaps)."""
        n = self.n_seconds
        if self.timestamps_s is not None:
            sec = np.floor(self.timestamps_s).astype(np.int64)
            return np.bincount(sec, minlength=n)[:n].astype(np.float64) * self.rate_scale
        assert self.counts is not None and self.step_s is not None
        step = self.step_s
        if step >= 1.0 and float(step).is_integer():
            return np.repeat(self.counts / step, int(step))[:n]
        # Sub-second or fractional steps: accumulate each interval's count into the seconds it covers.
        edges = np.arange(n + 1, dtype=np.float64)
        cum = np.concatenate(([0.0], np.cumsum(np.nan_to_num(self.counts))))
        grid_t = np.concatenate((self.t_s, [self.t_s[-1] + step]))
        per_s = np.diff(np.interp(edges, grid_t, cum))
        nan_s = np.interp(edges[:-1] + 0.5, grid_t[:-1] + step / 2, np.isnan(self.counts).astype(float)) > 0.5
        per_s[nan_s] = np.nan
        return per_s

    def arrivals(self, seed: int, *, bridge: bool = False) -> FloatArray:
        """Request timestamps (seconds from window start, sorted), reproducible for a given seed.

        Interval traces: a Poisson number of requests with mean `counts[i]` per interval, placed uniformly
        within it (a Poisson process with piecewise-constant rate); masked gaps produce none, or with
        `bridge` the counts interpolated across them (`bridge_gaps`). Request traces: the logged times; for
        `rate_scale` != 1 every request is kept floor(scale) times plus once more with probability
        frac(scale) (duplicates arrive at the same instant, keeping the trace's burst structure).
        """
        rng = np.random.default_rng(seed)
        if self.timestamps_s is not None:
            ts = self.timestamps_s
            if self.rate_scale == 1.0:
                return ts.copy()
            whole = math.floor(self.rate_scale)
            copies = np.full(len(ts), whole, dtype=np.int64)
            copies += rng.random(len(ts)) < (self.rate_scale - whole)
            return np.repeat(ts, copies)
        assert self.counts is not None and self.step_s is not None
        lam = bridge_gaps(self.counts) if bridge else np.nan_to_num(self.counts, nan=0.0)
        n = rng.poisson(lam)
        starts = np.repeat(self.t_s, n)
        out = starts + rng.random(len(starts)) * self.step_s
        out.sort()
        return out


def bridge_gaps(values: FloatArray) -> FloatArray:
    """`values` with NaN (masked gaps) replaced by linear interpolation between the nearest known
    values on either side (the nearest one at the edges; zeros if nothing is known)."""
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    if not nan.any():
        return v.copy()
    if nan.all():
        return np.zeros_like(v)
    known = np.flatnonzero(~nan)
    out = v.copy()
    out[nan] = np.interp(np.flatnonzero(nan), known, v[known])
    return out


def resolve_trace(name_or_path: str | Path) -> Path:
    """An existing path as is; otherwise a shipped trace by file name or stem in simulations/traces/.

    A shipped trace is matched by its name without the compression suffix, so `worldcup98_60s.csv`
    also finds the installed package's `worldcup98_60s.csv.xz`.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    name = str(name_or_path)
    if "/" not in name:
        stem = trace_name(Path(name))
        for suffix in TRACE_SUFFIXES:
            q = TRACES_DIR / f"{stem}{suffix}"
            if q.is_file():
                return q
    shipped = ", ".join(shipped_traces()) or "(none found)"
    raise FileNotFoundError(
        f"trace {name!r}: no such file, and not a shipped trace in {TRACES_DIR} (shipped: {shipped})"
    )


def shipped_traces() -> list[str]:
    """File names of the traces shipped in simulations/traces/ (both schemas)."""
    if not TRACES_DIR.is_dir():
        return []
    return sorted(
        p.name
        for p in TRACES_DIR.iterdir()
        if p.name.endswith(TRACE_SUFFIXES) and not p.name.startswith("service_time")
    )


def trace_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".xz", ".csv"):
        name = name.removesuffix(suffix)
    return name


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TraceError(f"{path}: cannot read trace: {e}") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise TraceError(f"{path}: corrupt gzip data: {e}") from e
    elif raw[:6] == b"\xfd7zXZ\x00":
        try:
            raw = lzma.decompress(raw)
        except lzma.LZMAError as e:
            raise TraceError(f"{path}: corrupt xz data: {e}") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TraceError(f"{path}: not UTF-8 text: {e}") from e


def _locate_bad_line(path: Path, body: str, ncols: int, first_line: int, expected: str) -> TraceError:
    """Slow path, only after the fast parser failed: find the first malformed line."""
    for i, line in enumerate(body.splitlines()):
        fields = line.strip().split(",")
        if line.strip() == "":
            return TraceError(f"{path}:{first_line + i}: empty line (expected {expected})")
        if len(fields) != ncols:
            return TraceError(f"{path}:{first_line + i}: {len(fields)} fields in {line!r} (expected {expected})")
        for f in fields:
            try:
                float(f)
            except ValueError:
                return TraceError(f"{path}:{first_line + i}: not a number: {f!r} (expected {expected})")
    return TraceError(f"{path}: cannot parse (expected {expected})")


def parse_rows(path: Path) -> tuple[tuple[str, ...], FloatArray]:
    """Parsed file, cached by (path, size, mtime): a simulation reads the same trace for its window,
    its history and its scale, and the large files (the 1 s NASA trace: a row per second) are slow to
    parse. Arrays are read-only."""
    st = path.stat()
    return _parse_cached(path.resolve(), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=2)
def _parse_cached(path: Path, _size: int, _mtime_ns: int) -> tuple[tuple[str, ...], FloatArray]:
    header, data = _parse_file(path)
    data.setflags(write=False)
    return header, data


def _parse_file(path: Path) -> tuple[tuple[str, ...], FloatArray]:
    text = _read_text(path)
    header_line, _, body = text.partition("\n")
    header = tuple(h.strip() for h in header_line.strip().split(","))
    if header not in (REQUEST_HEADER, INTERVAL_HEADER):
        raise TraceError(
            f"{path}:1: header {header_line.strip()!r} is not a trace header "
            f"(expected 'timestamp_s' for per-request traces or 't_s,requests' for per-interval traces)"
        )
    ncols = len(header)
    expected = f"{ncols} numeric column(s) {','.join(header)}"
    if body.strip() == "":
        raise TraceError(f"{path}: no data rows after the header (expected {expected})")
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        raise _locate_bad_line(path, body.rstrip("\n"), ncols, 2, expected) from None
    if data.shape[1] != ncols:
        raise _locate_bad_line(path, body.rstrip("\n"), ncols, 2, expected)
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise TraceError(f"{path}:{i + 2}: non-finite value {data[i].tolist()} (expected finite numbers)")
    return header, data


def check_window(path: Path, start_s: float | None, duration_s: float | None) -> None:
    if start_s is not None and not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"{path}: start_s must be a finite number >= 0 (got {start_s})")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"{path}: duration_s must be a finite number > 0 (got {duration_s})")


def request_trace(p: Path, ts: FloatArray, rate_scale: float, start_s: float | None, duration_s: float | None) -> Trace:
    if ts[0] < 0:
        raise TraceError(f"{p}:2: negative timestamp_s {ts[0]} (expected seconds >= 0)")
    back = np.diff(ts) < 0
    if back.any():
        i = int(np.argmax(back))
        raise TraceError(
            f"{p}:{i + 3}: timestamp_s {ts[i + 1]} is before the previous {ts[i]} (expected sorted timestamps)"
        )
    t0 = 0.0 if start_s is None else start_s
    full_end = math.floor(float(ts[-1])) + 1.0
    end = full_end if duration_s is None else min(full_end, t0 + duration_s)
    if t0 >= full_end:
        raise ValueError(f"{p}: start_s={t0} is past the end of the trace ({full_end:.0f} s)")
    lo, hi = np.searchsorted(ts, [t0, end], side="left")
    window = ts[lo:hi] - t0
    return Trace(
        name=trace_name(p),
        source_path=p,
        step_s=None,
        t_s=window,
        counts=None,
        timestamps_s=window,
        rate_scale=rate_scale,
        start_s=t0,
        duration_s=end - t0,
    )


def interval_trace(
    p: Path,
    t: FloatArray,
    counts: FloatArray,
    rate_scale: float,
    start_s: float | None,
    duration_s: float | None,
    mask_gaps: bool,
) -> Trace:
    if len(t) < 2:
        raise TraceError(f"{p}: only {len(t)} data row(s) (expected >= 2 rows to know the interval)")
    neg = counts < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise TraceError(f"{p}:{i + 2}: negative requests {counts[i]} (expected a count >= 0)")
    step = float(t[1] - t[0])
    if step <= 0:
        raise TraceError(f"{p}:3: t_s {t[1]} does not increase (expected a fixed step after t_s={t[0]})")
    irregular = np.abs(np.diff(t) - step) > 1e-6 * max(step, 1.0)
    if irregular.any():
        i = int(np.argmax(irregular))
        raise TraceError(
            f"{p}:{i + 3}: t_s {t[i + 1]} breaks the fixed {step:g} s step after t_s={t[i]} "
            "(expected a regular grid; fill missing intervals)"
        )
    cts = counts * rate_scale
    if mask_gaps:
        cts = cts.copy()
        cts[gap_mask(counts, step)] = np.nan
    first = float(t[0])
    full_end = float(t[-1]) + step
    t0 = first if start_s is None else start_s
    if t0 >= full_end or t0 < first:
        raise ValueError(f"{p}: start_s={t0} is outside the trace [{first:g}, {full_end:g}) s")
    k = (t0 - first) / step
    if abs(k - round(k)) > 1e-6:
        raise ValueError(f"{p}: start_s={t0} is not on the trace's {step:g} s grid (expected a multiple)")
    end = full_end if duration_s is None else min(full_end, t0 + duration_s)
    lo = round(k)
    hi = math.ceil((end - first) / step - 1e-9)
    return Trace(
        name=trace_name(p),
        source_path=p,
        step_s=step,
        t_s=t[lo:hi] - t0,
        counts=cts[lo:hi],
        timestamps_s=None,
        rate_scale=rate_scale,
        start_s=t0,
        duration_s=(hi - lo) * step,
    )


def gap_mask(counts: FloatArray, step_s: float) -> BoolArray:
    """Boolean mask of the intervals judged to be gaps by the rule in the module docstring."""
    n = len(counts)
    mask = np.zeros(n, dtype=bool)
    z = np.concatenate(([0], (counts == 0).astype(np.int8), [0]))
    d = np.diff(z)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)  # exclusive
    # only runs strictly inside the trace, lasting at least GAP_MIN_S
    inner = (starts > 0) & (ends < n) & ((ends - starts) * step_s >= GAP_MIN_S - 1e-9)
    starts, ends = starts[inner], ends[inner]
    if len(starts) == 0:
        return mask
    run = ends - starts
    ctx = np.maximum(run, max(GAP_CONTEXT_MIN_INTERVALS, math.ceil(GAP_CONTEXT_S / step_s)))
    cum = np.concatenate(([0.0], np.cumsum(counts)))
    left_lo = np.maximum(starts - ctx, 0)
    right_hi = np.minimum(ends + ctx, n)
    total = (cum[starts] - cum[left_lo]) + (cum[right_hi] - cum[ends])
    width = (starts - left_lo) + (right_hi - ends)
    expected = total / np.maximum(width, 1) * run
    for s, e in zip(starts[expected > GAP_EXPECTED_REQUESTS], ends[expected > GAP_EXPECTED_REQUESTS], strict=True):
        mask[s:e] = True
    return mask
