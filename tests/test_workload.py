"""Trace loading: both schemas, windows, scaling, gap masking, arrivals, errors, shipped files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from autoscaler.core.types import FloatArray
from autoscaler.sim.superpose import centred_moving_average
from autoscaler.sim.traces import TRACES_DIR, TraceError, gap_mask, resolve_trace, shipped_traces
from autoscaler.sim.workload import load_trace


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def interval_csv(tmp_path: Path) -> Path:
    rows = "\n".join(f"{60 * i},{c}" for i, c in enumerate([60, 120, 0, 30]))
    return write(tmp_path / "toy_60s.csv", "t_s,requests\n" + rows + "\n")


@pytest.fixture
def request_csv(tmp_path: Path) -> Path:
    ts = [0.1, 0.5, 0.9, 1.2, 2.7, 2.8, 5.0]
    return write(tmp_path / "toy_req.csv", "timestamp_s\n" + "\n".join(f"{t:.3f}" for t in ts) + "\n")


def test_interval_trace_rate_per_second_spreads_counts(interval_csv: Path) -> None:
    tr = load_trace(interval_csv)
    assert tr.step_s == 60.0 and tr.timestamps_s is None and tr.name == "toy_60s"
    r = tr.rate_per_second()
    assert len(r) == 240
    np.testing.assert_allclose(r[:60], 1.0)
    np.testing.assert_allclose(r[60:120], 2.0)
    np.testing.assert_allclose(r[120:180], 0.0)
    assert r.sum() == pytest.approx(210.0)


def test_sub_second_steps_are_summed_into_seconds(tmp_path: Path) -> None:
    p = write(tmp_path / "half.csv", "t_s,requests\n0,1\n0.5,3\n1.0,0\n1.5,2\n")
    tr = load_trace(p)
    assert tr.step_s == 0.5 and tr.duration_s == 2.0
    np.testing.assert_allclose(tr.rate_per_second(), [4.0, 2.0])


def test_gzip_interval_trace_equals_plain(interval_csv: Path, tmp_path: Path) -> None:
    gz = tmp_path / "toy_60s.csv.gz"
    gz.write_bytes(gzip.compress(interval_csv.read_bytes()))
    a, b = load_trace(interval_csv), load_trace(gz)
    assert b.name == "toy_60s"
    np.testing.assert_array_equal(a.counts, b.counts)


def test_window_and_scale(interval_csv: Path) -> None:
    tr = load_trace(interval_csv, start_s=60, duration_s=120, rate_scale=2.5)
    assert tr.start_s == 60.0 and tr.duration_s == 120.0
    np.testing.assert_array_equal(tr.t_s, [0.0, 60.0])  # re-based to the window start
    np.testing.assert_allclose(tr.counts, [300.0, 0.0])
    with pytest.raises(ValueError, match="not on the trace's 60 s grid"):
        load_trace(interval_csv, start_s=30)
    with pytest.raises(ValueError, match="outside the trace"):
        load_trace(interval_csv, start_s=600)
    with pytest.raises(ValueError, match="rate_scale"):
        load_trace(interval_csv, rate_scale=0)


def test_request_trace_window_and_rates(request_csv: Path) -> None:
    tr = load_trace(request_csv)
    assert tr.step_s is None and tr.counts is None and tr.duration_s == 6.0
    np.testing.assert_array_equal(tr.rate_per_second(), [3, 1, 2, 0, 0, 1])
    w = load_trace(request_csv, start_s=1.0, duration_s=2.0)
    np.testing.assert_allclose(w.timestamps_s, [0.2, 1.7, 1.8])
    np.testing.assert_array_equal(w.rate_per_second(), [1, 2])
    tail = load_trace(request_csv, start_s=4.0, duration_s=100.0)  # capped at the end of the trace
    assert tail.duration_s == 2.0 and tail.timestamps_s is not None and tail.timestamps_s.tolist() == [1.0]


def test_request_trace_scaling_is_seeded_thinning_and_duplication(request_csv: Path) -> None:
    tr = load_trace(request_csv, rate_scale=2.0)
    a = tr.arrivals(seed=1)
    assert len(a) == 14 and set(a.tolist()) == set(tr.timestamps_s.tolist())  # type: ignore[union-attr]
    frac = load_trace(request_csv, rate_scale=1.5)
    x, y, z = frac.arrivals(seed=3), frac.arrivals(seed=3), frac.arrivals(seed=4)
    np.testing.assert_array_equal(x, y)
    assert 7 <= len(x) <= 14 and np.all(np.diff(x) >= 0)
    assert len(z) >= 7  # different seed may keep a different subset, never fewer than the originals
    np.testing.assert_allclose(frac.rate_per_second().sum(), 7 * 1.5)


def test_request_thinning_keeps_expected_fraction(tmp_path: Path) -> None:
    ts = np.arange(20_000) * 0.01
    p = write(tmp_path / "many_req.csv", "timestamp_s\n" + "\n".join(f"{t:.2f}" for t in ts) + "\n")
    a = load_trace(p, rate_scale=0.3).arrivals(seed=7)
    assert abs(len(a) / 20_000 - 0.3) < 0.02


def test_interval_arrivals_are_poisson_within_each_interval(tmp_path: Path) -> None:
    rows = "\n".join(f"{10 * i},{c}" for i, c in enumerate([500, 0, 2000]))
    tr = load_trace(write(tmp_path / "x_10s.csv", "t_s,requests\n" + rows + "\n"))
    runs = [tr.arrivals(seed=s) for s in range(40)]
    np.testing.assert_array_equal(runs[0], tr.arrivals(seed=0))
    counts = np.array([np.histogram(a, bins=[0, 10, 20, 30])[0] for a in runs])
    assert counts[:, 1].sum() == 0
    # Poisson: mean ~ variance ~ the interval's count
    assert abs(counts[:, 0].mean() - 500) < 3 * np.sqrt(500 / 40)
    assert 0.4 < counts[:, 2].var() / 2000 < 2.0
    assert all(np.all(np.diff(a) >= 0) for a in runs)


def test_gap_mask_rule(tmp_path: Path) -> None:
    base = np.full(200, 30.0)  # 30 requests/min
    base[100:102] = 0  # 2 silent minutes at 30/min: expected 60 requests -> a gap
    base[150] = 0  # 1 minute: expected 30 -> a gap too
    low = np.full(200, 1.0)
    low[100:103] = 0  # 3 minutes at 1/min: expected 3 -> real silence
    np.testing.assert_array_equal(np.flatnonzero(gap_mask(base, 60.0)), [100, 101, 150])
    assert not gap_mask(low, 60.0).any()
    edge = np.full(50, 30.0)
    edge[:3] = 0  # leading zeros are not "inside" the trace
    assert not gap_mask(edge, 60.0).any()
    sub_minute = np.full(600, 5.0)
    sub_minute[300:330] = 0  # 30 silent seconds at 5 req/s: shorter than the 60 s minimum
    assert not gap_mask(sub_minute, 1.0).any()
    p = write(tmp_path / "g_60s.csv", "t_s,requests\n" + "\n".join(f"{60 * i},{c:g}" for i, c in enumerate(base)))
    tr = load_trace(p, mask_gaps=True)
    r = tr.rate_per_second()
    assert np.isnan(r[6000:6120]).all() and not np.isnan(r[:6000]).any()
    assert not np.isnan(load_trace(p).rate_per_second()).any()
    arr = tr.arrivals(seed=0)
    assert not ((arr >= 6000) & (arr < 6120)).any()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("time,count\n0,1\n", r":1: header 'time,count' is not a trace header .*'t_s,requests'"),
        ("t_s,requests\n0,1\n60,x\n", r":3: not a number: 'x'"),
        ("t_s,requests\n0,1\n60,2,3\n", r":3: 3 fields"),
        ("t_s,requests\n0,1\n60,-2\n", r":3: negative requests"),
        ("t_s,requests\n0,1\n60,2\n180,2\n", r":4: t_s 180.0 breaks the fixed 60 s step"),
        ("t_s,requests\n0,1\n", r"only 1 data row"),
        ("t_s,requests\n", r"no data rows"),
        ("timestamp_s\n0.5\n0.2\n", r":3: timestamp_s 0.2 is before the previous 0.5"),
        ("t_s,requests\n0,1\n60,nan\n", r":3: non-finite value"),
    ],
)
def test_malformed_files_name_file_line_and_expectation(tmp_path: Path, text: str, match: str) -> None:
    p = write(tmp_path / "bad.csv", text)
    with pytest.raises(TraceError, match=match) as ei:
        load_trace(p)
    assert str(p) in str(ei.value)


def test_resolve_trace_by_name_stem_or_path(interval_csv: Path) -> None:
    assert resolve_trace("nasa_http_jul95_60s.csv") == TRACES_DIR / "nasa_http_jul95_60s.csv"
    assert resolve_trace("nasa_http_jul95_1s") == TRACES_DIR / "nasa_http_jul95_1s.csv.gz"
    assert resolve_trace(interval_csv) == interval_csv
    with pytest.raises(FileNotFoundError, match=r"shipped: .*worldcup98_60s\.csv"):
        resolve_trace("no_such_trace")


def test_shipped_traces_load_with_attribution() -> None:
    names = shipped_traces()
    for expected in (
        "azure_llm2023_code_req.csv",
        "azure_functions2019_500fn_8h_http_only_60s.csv",
        "servegen_m-large_600s.csv",
        "nasa_http_jul95_60s.csv",
        "nasa_http_jul95_1s.csv.gz",
        "worldcup98_60s.csv",
    ):
        assert expected in names
    sources = (TRACES_DIR / "SOURCES.md").read_text()
    for name in [*names, "service_time_profiles_resnet50.csv"]:
        assert name in sources, f"{name} has no attribution in SOURCES.md"
    small = [n for n in names if "1s" not in n]
    for n in small:
        tr = load_trace(n)
        r = tr.rate_per_second()
        assert len(r) == tr.n_seconds and np.all(r >= 0)


def test_shipped_totals_match_published_counts() -> None:
    # NASA July 1995: 1,891,714 requests (SOURCES.md); WorldCup98: 1,352,804,107; 1 s and 60 s files agree.
    n60 = load_trace("nasa_http_jul95_60s")
    n1 = load_trace("nasa_http_jul95_1s")
    assert n1.counts is not None and n60.counts is not None
    assert n1.counts.sum() == 1_891_714
    # the 60 s file sums whole minutes only (the final 25 s are dropped)
    np.testing.assert_array_equal(n1.counts[: len(n60.counts) * 60].reshape(-1, 60).sum(axis=1), n60.counts)
    assert load_trace("worldcup98_60s").rate_per_second().sum() == pytest.approx(1_352_804_107)
    wc = load_trace("worldcup98_60s", mask_gaps=True)
    assert int(wc.gap_mask.sum()) == 10  # the 10 filled minutes documented in SOURCES.md


# --- rate scaling by superposition (superpose_s) -------------------------------------------------------


def test_centred_moving_average_edges_and_nan_neighbours() -> None:
    x = np.array([3.0, 1.0, 2.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(centred_moving_average(x, 3), [2.0, 2.0, 1.0, 2 / 3, 1 / 3, 0.5])
    np.testing.assert_array_equal(centred_moving_average(x, 1), x)
    g = np.array([4.0, 4.0, np.nan, np.nan, 2.0, 2.0])
    out = centred_moving_average(g, 3)
    assert np.isnan(out[2:4]).all()  # a masked gap stays missing ...
    np.testing.assert_allclose(out[[0, 1, 4, 5]], [4.0, 4.0, 2.0, 2.0])  # ... and is not zero load next to it


def test_superposed_request_trace_is_a_1s_interval_trace(request_csv: Path) -> None:
    tr = load_trace(request_csv, rate_scale=2.0, superpose_s=3)
    assert tr.step_s == 1.0 and tr.timestamps_s is None and tr.counts is not None and tr.superpose_s == 3.0
    assert tr.duration_s == 6.0 and tr.t_s.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(tr.rate_per_second(), 2.0 * np.array([2.0, 2.0, 1.0, 2 / 3, 1 / 3, 0.5]))
    a = tr.arrivals(seed=5)  # Poisson per second, reproducible
    np.testing.assert_array_equal(a, tr.arrivals(seed=5))
    assert np.all(np.diff(a) >= 0) and np.all((a >= 0) & (a < 6))
    w = load_trace(request_csv, rate_scale=2.0, superpose_s=3, start_s=2, duration_s=3)
    np.testing.assert_allclose(w.rate_per_second(), tr.rate_per_second()[2:5])  # smoothed before windowing
    np.testing.assert_allclose(load_trace(request_csv, superpose_s=1).rate_per_second(), [3, 1, 2, 0, 0, 1])
    assert load_trace(request_csv, rate_scale=2.0).timestamps_s is not None  # default: unchanged


@pytest.mark.parametrize("bad", [0, 0.5, -3, float("nan"), float("inf")])
def test_bad_superpose_s_is_a_clear_error(request_csv: Path, bad: float) -> None:
    with pytest.raises(ValueError, match=r"superpose_s must be a finite number of seconds >= 1"):
        load_trace(request_csv, superpose_s=bad)


def test_superposed_interval_trace_keeps_gaps_missing(tmp_path: Path) -> None:
    base = np.full(200, 30.0)  # 0.5 requests/s, with a 2-minute logging gap at minutes 100-101
    base[100:102] = 0
    p = write(tmp_path / "g_60s.csv", "t_s,requests\n" + "\n".join(f"{60 * i},{c:g}" for i, c in enumerate(base)))
    r = load_trace(p, mask_gaps=True, superpose_s=60, rate_scale=4.0).rate_per_second()
    assert len(r) == 12_000 and np.isnan(r[6000:6120]).all() and not np.isnan(r[:6000]).any()
    np.testing.assert_allclose(r[5900:6000], 2.0)  # neighbours of the gap are not dragged towards zero
    unmasked = load_trace(p, superpose_s=60).rate_per_second()
    assert not np.isnan(unmasked).any() and unmasked[6060] == 0.0 and unmasked[6000] == pytest.approx(0.25)
    assert load_trace(p, superpose_s=60, start_s=30).start_s == 30.0  # any whole second, not the 60 s grid
    with pytest.raises(ValueError, match="1 s grid"):
        load_trace(p, superpose_s=60, start_s=30.5)


def test_superposition_preserves_volume() -> None:
    kw = {"start_s": 86_400.0, "duration_s": 7 * 86_400.0, "rate_scale": 539.0}
    dup = load_trace("nasa_http_jul95_1s", **kw).rate_per_second()
    sup = load_trace("nasa_http_jul95_1s", superpose_s=60, **kw).rate_per_second()
    assert len(sup) == len(dup)
    assert sup.sum() == pytest.approx(dup.sum(), rel=1e-4)  # only the window edges trade a few requests
    llm = load_trace("azure_llm2023_code_req", rate_scale=3.0, superpose_s=60).rate_per_second()
    assert llm.sum() == pytest.approx(3.0 * 8_819, rel=0.01)  # 57 min: the two 30 s file edges lose a little


def _hourly_peak_to_mean(r: FloatArray) -> float:
    h = np.nan_to_num(r)[: len(r) // 3600 * 3600].reshape(-1, 3600)
    busy = h.mean(axis=1) > 0
    return float(np.median(h[busy].max(axis=1) / h[busy].mean(axis=1)))


def test_superposition_removes_duplication_bursts_on_nasa_1s() -> None:
    kw = {"start_s": 604_800.0, "duration_s": 604_800.0, "rate_scale": 539.0, "mask_gaps": True}
    dup = np.nan_to_num(load_trace("nasa_http_jul95_1s", **kw).rate_per_second())
    sup = np.nan_to_num(load_trace("nasa_http_jul95_1s", superpose_s=60, **kw).rate_per_second())
    assert (dup == 0).mean() > 0.4 and (sup == 0).mean() < 0.02  # most seconds empty vs almost none
    assert dup.max() / dup.mean() > 2.5 * (sup.max() / sup.mean())  # 22 vs 8 over the week
    assert _hourly_peak_to_mean(dup) > 4 * _hourly_peak_to_mean(sup)  # busiest second vs its hour: 10 vs 2


def test_superposed_history_and_window_line_up() -> None:
    kw = {"rate_scale": 100.0, "mask_gaps": True, "superpose_s": 60}
    start, h, d = 432_000.0, 86_400.0, 21_600.0  # days 4-5: the span crosses masked logging gaps
    hist = load_trace("nasa_http_jul95_1s", start_s=start - h, duration_s=h, **kw).rate_per_second()
    win = load_trace("nasa_http_jul95_1s", start_s=start, duration_s=d, **kw).rate_per_second()
    both = load_trace("nasa_http_jul95_1s", start_s=start - h, duration_s=h + d, **kw).rate_per_second()
    assert np.isnan(hist).any() and len(both) == h + d
    np.testing.assert_array_equal(np.concatenate((hist, win)), both)
    # the window's first second averages 30 s of history too (centred, smoothed before windowing)
    raw = load_trace("nasa_http_jul95_1s", start_s=start - 30, duration_s=60, rate_scale=100.0).rate_per_second()
    assert win[0] == pytest.approx(raw.mean())
