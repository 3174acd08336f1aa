"""`static-peak`: a fixed fleet big enough for the trace's peak second, all the time.

The "no autoscaler" baseline most teams actually run: provision for the worst second and pay
for it around the clock. Clairvoyant (it reads the whole future load to find the peak), so it
is an upper bound on cost for a fleet that never misses for lack of replicas.

Per-replica capacity is the lower of `CapacityModel.capacity_at_slo_rps` (the SLO quantile's
latency within the SLO) and the highest rate whose own fraction of requests within the SLO
latency reaches the attainment goal, so even the peak second meets the goal. The latter reads the
simulator's truth (`sim/fluid.py` tables measured with the DES, at the replicas' real speed,
`PolicyContext.true_service_scale`); the former is the analytic planning model at that speed.
Knob: `headroom` (extra fraction of capacity kept free; default 0).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim.fluid import rate_table
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import ServingAutoscalerSpec


def attainment_capacity_rps(spec: ServingAutoscalerSpec, model: CapacityModel | None = None) -> float:
    """Highest per-replica rate meeting both the SLO quantile and the attainment goal per second."""
    model = model or CapacityModel(spec.profile)
    params = spec.batching.initial
    cap_q = model.capacity_at_slo_rps(params, spec.slo)
    table = rate_table(model, params, spec.slo)
    ok = table.within >= spec.slo.attainment
    # first rate (from 0) where the goal fails; everything below it meets it
    bad = np.flatnonzero(~ok)
    cap_a = float(table.rates[bad[0] - 1]) if len(bad) and bad[0] > 0 else float(table.rates[-1])
    if len(bad) and bad[0] == 0:
        cap_a = 0.0
    return min(cap_q, cap_a)


class StaticPeakPolicy:
    name: ClassVar[str] = "static-peak"
    knob: ClassVar[str] = "headroom"
    clairvoyant: ClassVar[bool] = True

    def __init__(self, spec: ServingAutoscalerSpec, *, headroom: float = 0.0, period_s: float = 60.0) -> None:
        if not (0.0 <= headroom < 1.0):
            raise ValueError(f"static-peak.headroom: expected a fraction in [0, 1) (got {headroom})")
        self.spec = spec
        self.headroom = headroom
        self.period_s = period_s
        self.replicas = spec.min_replicas

    def start(self, ctx: PolicyContext) -> None:
        if ctx.future_rps is None:
            raise ValueError("static-peak is clairvoyant: the engine must pass future_rps")
        truth = CapacityModel(self.spec.profile, service_scale=ctx.true_service_scale)
        cap = attainment_capacity_rps(self.spec, truth) * (1.0 - self.headroom)
        peak = float(np.nanmax(ctx.future_rps)) if len(ctx.future_rps) else 0.0
        n = self.spec.max_replicas if cap <= 0 else math.ceil(peak / cap - 1e-9)
        self.replicas = max(self.spec.min_replicas, min(self.spec.max_replicas, n))

    def decide(self, view: ClusterView) -> PolicyOutput:
        return PolicyOutput(desired_replicas=self.replicas, reason="static peak")
