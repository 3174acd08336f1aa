"""The one-server batch queue solved as an embedded Markov chain: the analytic model's tail.

Owns the latency distribution, batch sizes, utilization and rejections of a TF Serving replica
whose batches run one at a time (`ServiceTime.servers` = 1: one GPU, the product default), for
`core/capacity.py`. The fixed-point model there describes one batch at a time and so loses the
requests that overflow a full open batch while the server is busy: they start the next batch
early, so full batches come in runs and the queue behind them is longer. Near capacity it
counted about half the SLO misses of the exact DES (T4 profile, B = 16: 1.0 % vs 1.9 % at
359 rps/replica). Here the queue is followed request by request at dispatch instants:

* State X = requests waiting when the server frees (closed full batches plus the open one).
  The server takes K = min(X, B); during its service S(K), Poisson(λ·S(K)) requests arrive;
  X' = X − K + arrivals, capped at the queue's capacity `max_enqueued_batches`·B (arrivals
  beyond it are rejected, as TF Serving does). If nothing waits, the server idles until the next
  arrival, whose batch collects Poisson(λ·T) more for the timeout T (capped at B) and goes.
* The timeout: when a batch ends leaving 1 <= y < B waiting, the open batch goes only once its
  first request is T old (or it fills); while the server waits, Poisson(λ·wait) more join. The
  first request's age comes from where it arrived in the batch that just ended (the first of y
  uniform arrivals: Beta(1, y), `_V_NODES` quadrature nodes).
* The stationary distribution of X: Grassmann–Taksar–Heyman elimination, banded (X leads only
  to X − B and up), over the states that matter (the tail of X decays geometrically, with the
  root z > 1 of z^B = exp(λ·S(B)·(z − 1)); cut where it has fallen below 1e-12).
* A request arriving (PASTA) at elapsed time t of a batch of K that left q waiting finds
  j = q + Poisson(λ·t) requests ahead. Batches ahead of its own are full (FIFO), so it is
  dispatched after D = S(K) − t + ⌊j / B⌋·S(B) (plus the timeout wait when its batch is the
  next one), in a batch of min(B, j mod B + 1 + Poisson(λ·D)); its latency is D + S(that
  batch). The integral over t uses `_T_NODES` midpoints (±4 % of the miss fraction vs 192).
  Requests that arrive while the server idles or waits out a timeout join that open batch.

Approximations: a batch that fills while its timeout runs is taken as if it waited it out (its
requests' latencies come out a little long); a request whose own batch is the next one waits
for the mean position of that batch's first request. Against the DES the miss fraction agrees
within ~5 % for short timeouts and within ~10 % with a 20 ms one (tests/test_capacity_tail.py).
"""

from __future__ import annotations

import math

import numpy as np

from autoscaler.core.types import FloatArray

_T_NODES = 32  # midpoints over a batch's service time for the arrival's elapsed time t (±4 % vs 192)
_TAIL_EPS = 1e-12  # the state space is cut where the stationary tail has fallen this far
_V_NODES = 6  # quadrature of the first waiting request's arrival time (timeout waits)
_X_CHUNK = 16  # latencies evaluated together by cdf_many (bounds its temporary arrays)
_W_EPS = 1e-14  # cells of the arrival's view lighter than this are dropped (they sum to ~1)
_MAX_STATES = 1500  # state-space bound: only rates within ~1 % of the max throughput reach it


def _lgamma_table(n: int) -> FloatArray:
    return np.array([math.lgamma(k + 1.0) for k in range(n)])


def _poisson_pmf(mean: float, n: int, lgam: FloatArray) -> FloatArray:
    """Poisson(mean) pmf over 0..n-1, the tail folded into the last entry."""
    out = np.zeros(n)
    if mean <= 0.0:
        out[0] = 1.0
        return out
    k = np.arange(n, dtype=np.float64)
    out = np.exp(k * math.log(mean) - mean - lgam[:n])
    out[-1] += max(0.0, 1.0 - float(out.sum()))
    return out


def _poisson_pmfs(means: FloatArray, n: int, lgam: FloatArray) -> FloatArray:
    """Poisson pmfs over 0..n-1 for every mean (last axis), not folded: e^-m · Π m/c (a running
    product is cheaper than an exp per entry); means so large that e^-m underflows, from logs."""
    m = np.asarray(means, dtype=np.float64)[..., None]
    ratios = np.empty((*m.shape[:-1], n))
    ratios[..., 0] = np.exp(-m[..., 0])
    ratios[..., 1:] = m / np.arange(1, n, dtype=np.float64)
    out: FloatArray = np.cumprod(ratios, axis=-1, dtype=np.float64)
    big = m[..., 0] > 700.0
    if big.any():
        k = np.arange(n, dtype=np.float64)
        mb = m[big]
        out[big] = np.exp(k * np.log(mb) - mb - lgam[:n])
    return out


def _tail_states(lam: float, s_full: float, big_b: int) -> float:
    """States beyond B after which P(X > x) < _TAIL_EPS: 1 / ln z for the root z > 1 of
    z^B = exp(λ·S(B)·(z − 1)) (the geometric decay of the queue's tail); inf at λ·S(B) ≥ B."""
    a = lam * s_full
    if a >= big_b:
        return math.inf
    # g(y) = a (e^y - 1) - B y, y = ln z > 0: g(0) = 0, g'(0) < 0, convex: bisect its positive root
    lo, hi = 0.0, 1.0
    while a * math.expm1(hi) - big_b * hi < 0.0:
        hi *= 2.0
        if hi > 700.0:
            return 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if a * math.expm1(mid) - big_b * mid < 0.0:
            lo = mid
        else:
            hi = mid
    y = max(hi, 1e-12)
    return -math.log(_TAIL_EPS) / y


def _gth_stationary(p: FloatArray, big_b: int, band: int) -> FloatArray:
    """Stationary distribution of the chain p over states 1..n (row/column 0 unused), by the
    Grassmann–Taksar–Heyman elimination from the top state down: numerically stable (no
    subtraction), and banded here — a state X > B leads only to X − B and up (so eliminating it
    touches the B columns below it), and only states within `band` below X lead to X — so it
    costs O(n · band · B) in plain numpy, without LAPACK."""
    n = p.shape[0] - 1
    p = p.copy()
    sums = np.zeros(n + 1)
    for k in range(n, 1, -1):
        c_lo = k - big_b if k > big_b else 1  # (a state above B leads to nothing below k - B)
        row = p[k, c_lo:k]
        s = float(row.sum())
        sums[k] = s
        if s > 0.0:
            r_lo = max(1, k - band)
            p[r_lo:k, c_lo:k] += np.outer(p[r_lo:k, k] * (1.0 / s), row)
    pi = np.zeros(n + 1)
    pi[1] = 1.0
    for k in range(2, n + 1):
        if sums[k] > 0.0:
            r_lo = max(1, k - band)
            pi[k] = float(pi[r_lo:k] @ p[r_lo:k, k]) / sums[k]
    out: FloatArray = pi / float(pi.sum())
    return out


class BulkQueue:
    """Steady state of one server taking up to B waiting requests per batch (see the module doc)."""

    def __init__(self, lam: float, service_s: FloatArray, timeout_s: float, max_enqueued_batches: int) -> None:
        svc = np.asarray(service_s, dtype=np.float64)  # S(k), k = 0..B
        big_b = len(svc) - 1
        self.lam, self.svc, self.big_b, self.timeout_s = lam, svc, big_b, timeout_s
        self.capacity = max_enqueued_batches * big_b
        s_full = float(svc[big_b])
        arrive_max = int(lam * s_full + 8.0 * math.sqrt(lam * s_full + 1.0) + 10)
        n = big_b + arrive_max + math.ceil(min(_tail_states(lam, s_full, big_b), 1e9))
        n = min(self.capacity, n, _MAX_STATES)
        self.n_states = n
        self.lgam = _lgamma_table(max(n, big_b) + arrive_max + 2)
        self.pi = self._stationary(n)
        xs = np.arange(n + 1)
        ks = np.minimum(xs, big_b)
        s_k = svc[ks]
        s_k[0] = 0.0
        self.p_empty = float(self.pi[1 : big_b + 1] @ np.exp(-lam * svc[1 : big_b + 1][: min(big_b, n)]))
        self.wait_s = float(self.pi @ self._row_wait_s)  # server idle: an open batch not yet due
        self.idle_s = self.p_empty * (1.0 / lam + timeout_s) + self.wait_s
        busy_s = float(self.pi @ s_k)
        self.cycle_s = busy_s + self.idle_s
        self.batch_size = float(self.pi @ ks)
        self.utilization = min(1.0, busy_s / self.cycle_s)
        self.batch_p = np.zeros(big_b + 1)
        self.batch_p[1:big_b] = self.pi[1:big_b]
        self.batch_p[big_b] = float(self.pi[big_b:].sum())
        self._prepare()

    # ---- the embedded chain --------------------------------------------------------------
    def _idle_batch(self) -> FloatArray:
        """P(K = k), k = 1..B, of a batch opened on an idle server (collects for the timeout)."""
        return _poisson_pmf(self.lam * self.timeout_s, self.big_b, self.lgam)

    def _stationary(self, n: int) -> FloatArray:
        """π(X), X = 0..n (π(0) = 0: the server dispatches only with a request waiting)."""
        lam, svc, big_b, lgam = self.lam, self.svc, self.big_b, self.lgam
        s_full = float(svc[big_b])
        arrivals = int(lam * s_full + 8.0 * math.sqrt(lam * s_full + 1.0) + 10)  # P(more) < 1e-14
        p = np.zeros((n + 1, n + 1))  # p[X, X']; X' beyond n is folded into n (the queue's capacity)
        idle = self._idle_batch()

        nothing = np.zeros(n + 1)  # P(no arrival during the batch) of rows that leave nothing waiting
        for x in range(1, min(big_b, n) + 1):
            pmf = _poisson_pmf(lam * svc[x], min(arrivals, n + 1), lgam)
            p[x, 1 : len(pmf)] += pmf[1:]
            nothing[x] = pmf[0]
        if n > big_b:  # full batches leaving q = X - B waiting: X' = q + arrivals, folded at n
            a = _poisson_pmf(lam * s_full, min(arrivals, n + 1), lgam)
            rows = np.arange(big_b + 1, n + 1)
            q = rows - big_b
            for i, a_i in enumerate(a.tolist()):
                cols = q + i
                inside = cols < n
                p[rows[inside], cols[inside]] += a_i
                p[rows[~inside], n] += a_i
        self._row_wait_s = np.zeros(n + 1)
        self._waits: tuple[np.ndarray, FloatArray, FloatArray] | None = None
        if self.timeout_s > 0.0:
            self._apply_timeout(p, n)
        p[:, 1 : big_b + 1] += nothing[:, None] * idle[None, :]  # the idle start
        # a state is reached from at most `arrivals` + B states below it (full batches) or from the
        # partial ones (X <= B), and elimination keeps that band
        return _gth_stationary(p, big_b, band=arrivals + 2 * big_b)

    def _apply_timeout(self, p: FloatArray, n: int) -> None:
        """A batch that ends leaving 1 <= y < B waiting: the open batch goes only once its first request
        is `timeout_s` old (or it fills), and collects Poisson(λ·wait) more meanwhile. Rewrites the
        rows of `p` (X' = y becomes X' = min(B, y + more)) and records each row's expected wait."""
        lam, svc, big_b, tmo = self.lam, self.svc, self.big_b, self.timeout_s
        ys = np.arange(1, big_b)  # y waiting at the end of the batch
        # the first of y arrivals in a batch of length s came at s·V, V ~ Beta(1, y): quadrature in V
        pq = (np.arange(_V_NODES) + 0.5) / _V_NODES
        v = 1.0 - (1.0 - pq[None, :]) ** (1.0 / ys[:, None])  # (y, nodes)
        rows = np.arange(1, min(n, 2 * big_b - 1) + 1)
        k = np.minimum(rows, big_b)
        s = svc[k]
        # rows that left nothing waiting (x <= B): the first came during this batch; others: before it
        age = np.where((rows <= big_b)[:, None, None], s[:, None, None] * (1.0 - v[None]), s[:, None, None])
        wait = np.maximum(0.0, tmo - age)  # (rows, y, nodes)
        busy = (wait > 0.0).any(axis=(1, 2)) & (p[rows, 1:big_b] > 0.0).any(axis=1)
        if not busy.any():
            return
        rows, wait = rows[busy], wait[busy]
        more = _poisson_pmfs(lam * wait, big_b, self.lgam).mean(axis=2)  # (rows, y, e = 0..B-1)
        # kernel y -> X' = min(B, y + e): e up to B - 1 - y stays partial, the rest fills the batch
        cols = ys[:, None] + np.arange(big_b)[None, :]  # (y, e)
        inside = cols < big_b
        kern = np.zeros((len(rows), big_b - 1, big_b + 1))
        r_i, y_i, e_i = np.nonzero(np.broadcast_to(inside, more.shape))
        kern[r_i, y_i, cols[y_i, e_i]] = more[r_i, y_i, e_i]
        kern[:, :, big_b] = np.maximum(0.0, 1.0 - kern.sum(axis=2))
        mass = p[rows, 1:big_b].copy()  # (rows, y)
        p[rows, 1:big_b] = 0.0
        p[rows, : big_b + 1] += np.einsum("ry,ryc->rc", mass, kern)
        self._row_wait_s[rows] = np.einsum("ry,ry->r", mass, wait.mean(axis=2))
        self._waits = (rows, mass, wait)  # for the requests that arrive while the batch waits

    # ---- the arrival's view --------------------------------------------------------------
    def _prepare(self) -> None:
        """x-independent arrays: for every (batch group, elapsed-time node, requests ahead j) the
        time-average weight, the dispatch delay D and the own-batch size distribution."""
        lam, svc, big_b, n = self.lam, self.svc, self.big_b, self.n_states
        s_full = float(svc[big_b])
        # groups: a partial batch k < B, a full one that left nothing waiting, a full one that left
        # q = X - B > 0 waiting (its first waiting request is older than the batch: no timeout wait)
        groups_k = [k for k in range(1, min(big_b - 1, n) + 1) if self.pi[k] > 0.0]
        q_full = self.pi[big_b:].copy()
        q_rest = q_full.copy()
        q_rest[0] = 0.0
        arrive_max = int(lam * s_full + 8.0 * math.sqrt(lam * s_full + 1.0) + 10)
        jn = len(q_full) + arrive_max
        g = len(groups_k) + 2
        s_g = np.array([svc[k] for k in groups_k] + [s_full, s_full])
        u = (np.arange(_T_NODES) + 0.5) / _T_NODES
        t = s_g[:, None] * u[None, :]  # (g, nodes)
        lgam = self.lgam if len(self.lgam) >= jn else _lgamma_table(jn)
        a_n = min(arrive_max, jn)
        pmf_t = _poisson_pmfs(lam * t, a_n, lgam)  # (g, nodes, arrivals): t <= S(B) holds < arrive_max
        weight = np.zeros((g, _T_NODES, jn))
        weight[:-1, :, :a_n] = pmf_t[:-1] * np.append(self.pi[groups_k], q_full[0])[:, None, None]
        rest = np.array([np.convolve(q_rest, pmf_t[-1, v])[:jn] for v in range(_T_NODES)])
        weight[-1, :, : rest.shape[1]] = rest
        weight *= (s_g / (_T_NODES * self.cycle_s))[:, None, None]
        col = weight.sum(axis=(0, 1))
        self.rejected = float(col[self.capacity :].sum())
        # requests ahead beyond the last j that carries weight, or rejected ones, are dropped
        live = np.flatnonzero(col[: self.capacity] > 1e-15)
        j_end = int(live[-1]) + 1 if live.size else 1
        m_n = -(-j_end // big_b)  # full batches ahead: 0 .. m_n - 1; j = m·B + r
        w = np.zeros((g, _T_NODES, m_n * big_b))
        w[:, :, :j_end] = weight[:, :, :j_end]
        w4 = w.reshape(g, _T_NODES, m_n, big_b)  # (g, nodes, m, r)
        # dispatch delay of the own batch: the rest of this service plus m full batches ...
        d = (s_g[:, None] - t)[:, :, None] + np.arange(m_n)[None, None, :] * s_full  # (g, nodes, m)
        # ... and, when it is the next one (m = 0), the wait until its first request is timeout_s old:
        # r = 0: the arrival itself, at t; else the first of r arrivals in [0, t], at t·V, V ~ Beta(1, r)
        nv = _V_NODES if self.timeout_s > 0.0 else 1
        pq = (np.arange(nv) + 0.5) / nv
        v = np.ones((big_b, nv))
        v[1:] = 1.0 - (1.0 - pq[None, :]) ** (1.0 / np.arange(1, big_b)[:, None])
        age = s_g[:, None, None, None] - t[:, :, None, None] * v[None, None]  # (g, nodes, r, V)
        age[-1] = s_g[-1]  # requests left waiting before the batch began
        wait_v = np.maximum(0.0, self.timeout_s - age)
        wait = wait_v.mean(axis=-1)
        # own batch: min(B, r + 1 + Poisson(λ D)). Behind m_cut full batches so much has arrived that
        # it is full (P(Poisson(λ m S(B)) < B) < 1e-9): only the first m_cut need its distribution
        m_cut = min(m_n, max(1, math.ceil((big_b + 6.0 * math.sqrt(big_b) + 6.0) / max(lam * s_full, 1e-12))))
        self._m_cut = m_cut
        self._w = w4[:, :, :m_cut]
        self._w_far = w4[:, :, m_cut:].sum(axis=-1)  # (g, nodes, m - m_cut)
        self._d_far = d[:, :, m_cut:]
        d_base = np.repeat(d[:, :, :m_cut, None], big_b, axis=-1)  # (g, nodes, m, r)
        d_near = d_base.copy()
        d_near[:, :, 0, :] += wait
        self._d_near = d_near
        # the own batch's arrivals: at m = 0 with the wait averaged over r (weights of r)
        w0 = self._w[:, :, 0, :]
        mean_wait = np.divide((w0 * wait).sum(-1), w0.sum(-1), out=np.zeros(w0.shape[:-1]), where=w0.sum(-1) > 0)
        d_own = d[:, :, :m_cut].copy()
        d_own[:, :, 0] += mean_wait
        own = np.zeros((g, _T_NODES, m_cut, big_b + 1))  # P(Poisson <= c), c = -1 .. B-1 (c = -1: 0)
        own[..., 1:] = np.minimum(np.cumsum(_poisson_pmfs(lam * d_own, big_b, lgam), axis=-1), 1.0)
        # only the (group, node, m, r) cells that carry weight, flattened: most do not (B² of them); the
        # next-batch cells (m = 0) once per V node of their timeout wait
        cells = self._w.reshape(-1)
        d_cells = d_near.reshape(-1)
        row = np.arange(cells.size) // big_b  # its (group, node, m) row of the own-batch table
        r1 = np.arange(cells.size) % big_b + 1  # r + 1
        later = (np.arange(cells.size) // big_b) % m_cut != 0  # m >= 1 (m = 0: the next batch)
        first = np.flatnonzero(~later & (cells > _W_EPS))
        rest = np.flatnonzero(later & (cells > _W_EPS))
        d0 = d_base.reshape(-1)  # without the wait
        gv = first // (m_cut * big_b)  # (group, node) of the cell
        waits = wait_v.reshape(-1, big_b, nv)[gv, first % big_b]  # (cells, V)
        spread = (waits > 0.0).any(axis=1)  # cells that may wait: one cell per V node, else one
        nrep = np.where(spread, nv, 1)
        w_first = np.repeat(cells[first] / nrep, nrep)
        d_first = np.repeat(d0[first], nrep)
        w_idx = np.repeat(spread, nrep)
        d_first[w_idx] += waits[spread].reshape(-1)
        first_row = np.repeat(row[first], nrep)
        r1_first = np.repeat(r1[first], nrep)
        own_rows = own.reshape(-1, big_b + 1)
        waited = np.flatnonzero(w_idx)
        if waited.size:  # a cell that waits for the timeout collects arrivals for its own wait
            extra = np.zeros((waited.size, big_b + 1))
            extra[:, 1:] = np.minimum(np.cumsum(_poisson_pmfs(lam * d_first[waited], big_b, lgam), axis=-1), 1.0)
            first_row[waited] = len(own_rows) + np.arange(waited.size)
            own_rows = np.concatenate((own_rows, extra))
        self._w_flat = np.concatenate((w_first, cells[rest]))
        self._d_flat = np.concatenate((d_first, d_cells[rest]))
        self._r1_flat = np.concatenate((r1_first, r1[rest]))
        self._own_row = np.concatenate((first_row, row[rest]))
        self._own_flat = own_rows
        far_keep = np.flatnonzero(self._w_far.reshape(-1) > _W_EPS)
        self._w_far_flat = self._w_far.reshape(-1)[far_keep]
        self._d_far_flat = self._d_far.reshape(-1)[far_keep]
        self._own_cdf = own
        # idle arrivals: the first waits the timeout, the others a uniform part of it; then S(K)
        self._idle_p = self._idle_batch()
        # a later arrival of that window is in it too: its batch is min(B, 2 + Poisson(λ T))
        self._idle_other_p = np.zeros(big_b)
        self._idle_other_p[1:] = self._idle_p[:-1]
        self._idle_other_p[-1] += self._idle_p[-1]
        self._idle_first_w = self.p_empty * (1.0 / lam) / self.cycle_s
        self._idle_other_w = self.p_empty * self.timeout_s / self.cycle_s
        self._prepare_waits()
        self.served = max(1e-300, 1.0 - self.rejected)

    def _prepare_waits(self) -> None:
        """Requests that arrive while an open batch of y waits out its timeout after a busy period
        (`_apply_timeout`): at τ uniform in the wait w, latency w - τ + S(min(B, y + 1 + Poisson(λ w)))."""
        big_b = self.big_b
        self._wait_w = np.zeros(0)
        if self._waits is None:
            return
        rows, mass, wait = self._waits  # (rows, y), (rows, y, V)
        nv = wait.shape[2]
        weight = self.pi[rows][:, None, None] * mass[:, :, None] * wait / (nv * self.cycle_s)
        keep = weight > _W_EPS
        if not keep.any():
            return
        _, y_i, _ = np.nonzero(keep)
        w_c = wait[keep]
        self._wait_w = weight[keep]
        self._wait_s_c = w_c
        # K' = min(B, y + 1 + Poisson(λ w)): pmf over k = 1..B
        more = _poisson_pmfs(self.lam * w_c, big_b, self.lgam)  # (cells, e)
        k_pmf = np.zeros((len(w_c), big_b + 1))
        cols = (y_i + 1)[:, None] + 1 + np.arange(big_b)[None, :]  # y = y_i + 1; k = y + 1 + e
        inside = cols < big_b
        r_i, e_i = np.nonzero(inside)
        k_pmf[r_i, cols[r_i, e_i]] = more[r_i, e_i]
        k_pmf[:, big_b] = np.maximum(0.0, 1.0 - k_pmf.sum(axis=1))
        self._wait_k = k_pmf[:, 1:]  # (cells, k = 1..B)

    def cdf_many(self, latency_s: FloatArray) -> FloatArray:
        """P(latency ≤ x) among served requests, for every x (seconds)."""
        xs = np.asarray(latency_s, dtype=np.float64).reshape(-1)
        out = np.empty(len(xs))
        for lo in range(0, len(xs), _X_CHUNK):
            out[lo : lo + _X_CHUNK] = self._cdf_chunk(xs[lo : lo + _X_CHUNK])
        return out

    def _cdf_chunk(self, xs: FloatArray) -> FloatArray:
        big_b, svc = self.big_b, self.svc
        sizes = svc[1:]  # S(1..B), increasing
        # own-batch sizes 1..kappa fit in x - D; with r ahead in it, c = kappa - r - 1 may still arrive
        kappa = np.searchsorted(sizes, xs[:, None] - self._d_flat[None, :], side="right")  # (x, cells)
        c = np.clip(kappa - self._r1_flat, -1, big_b - 1)
        f = self._own_flat[self._own_row[None, :], c + 1]
        f[kappa >= big_b] = 1.0
        total = f @ self._w_flat
        if self._w_far_flat.size:  # a full own batch: it fits or not
            far = np.searchsorted(sizes, xs[:, None] - self._d_far_flat[None, :], side="right") >= big_b
            total += far.astype(np.float64) @ self._w_far_flat
        idle_s = svc[1 : big_b + 1]
        if self._wait_w.size:  # arrivals during a timeout wait: P(w - τ + S(K') <= x), τ ~ U[0, w]
            frac = np.clip((xs[:, None, None] - idle_s[None, None, :]) / self._wait_s_c[None, :, None], 0.0, 1.0)
            total += np.einsum("xck,ck,c->x", frac, self._wait_k, self._wait_w)
        total += self._idle_first_w * ((idle_s[None, :] <= xs[:, None] - self.timeout_s) @ self._idle_p)
        if self._idle_other_w > 0.0:
            frac = np.clip((xs[:, None] - idle_s[None, :]) / max(self.timeout_s, 1e-12), 0.0, 1.0)
            total += self._idle_other_w * (frac @ self._idle_other_p)
        out: FloatArray = np.minimum(1.0, total / self.served)
        return out

    def mean_latency_s(self) -> float:
        """Mean latency of served requests."""
        big_b, svc = self.big_b, self.svc
        cdf = self._own_cdf[..., 1:]  # (g, nodes, m, c = 0..B-1)
        pmf = np.diff(cdf, axis=-1, prepend=0.0)
        # E[S(own)] for r = 0..B-1: sum_{c < B-r-1} S(r+1+c) pmf[c] + S(B) (1 - cdf[B-r-2])
        e_own = np.empty((*cdf.shape[:-1], big_b))
        for r in range(big_b):
            room = big_b - r - 1
            head = pmf[..., :room] @ svc[r + 1 : r + 1 + room] if room > 0 else 0.0
            rest = 1.0 - cdf[..., room - 1] if room > 0 else 1.0
            e_own[..., r] = head + svc[big_b] * rest
        total = float(np.vdot(self._w, self._d_near + e_own))
        total += float(np.vdot(self._w_far, self._d_far + svc[big_b]))
        if self._wait_w.size:
            total += float(self._wait_w @ (0.5 * self._wait_s_c + self._wait_k @ svc[1 : big_b + 1]))
        idle_mean = float(self._idle_p @ svc[1 : big_b + 1])
        other_mean = float(self._idle_other_p @ svc[1 : big_b + 1])
        total += self._idle_first_w * (self.timeout_s + idle_mean)
        total += self._idle_other_w * (0.5 * self.timeout_s + other_mean)
        return total / self.served
