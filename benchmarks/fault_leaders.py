"""Two leaders racing: the leader-race row of the fault matrix.

Two complete daemons (Lease elector + control loop + Kubernetes actuator, each with its own API
client and User-Agent) on one Lease in kmock's emulator, ticking concurrently on one ManualClock.
Every 6th tick the current holder's Lease requests fail for 4 ticks (a partition between it and
the API server) while its control loop keeps ticking, so the Lease changes hands under a zombie.
The API server side counts every Deployment write whose sender was not the Lease's live holder
(holderIdentity, renewTime + leaseDurationSeconds per the coordination.k8s.io/v1 Lease) when the
write arrived; a tick on which both electors believe they lead is a bad answer.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import kmock
from fault_hostile import Tally
from test_leader_daemons import SteadyLoad
from test_runtime_kubeemu import DEPLOYMENTS, EVENTS, HPAS, LEASES, VersionedEmulator, api_client_for, deployment

from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.core.store import DecisionStore
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.leader import LeaderConfig, LeaseElector
from autoscaler.runtime.loop import ControlLoop
from autoscaler.runtime.telemetry import Telemetry
from autoscaler.spec.types import ServingAutoscalerSpec

NS = "ml"


def _lease_spec(emu: VersionedEmulator) -> dict[str, Any]:
    return dict((emu.read_obj(LEASES, "ops", "tfserving-autoscaler") or {}).get("spec", {}))


class _Daemon:
    def __init__(
        self, emu: VersionedEmulator, clock: ManualClock, who: str, load: SteadyLoad, spec: Any, trust_lease: bool
    ) -> None:
        api = api_client_for(emu)
        api.user_agent = f"daemon-{who}"
        self.who = who
        cfg = LeaderConfig(identity=who, namespace="ops", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)
        self.elector = LeaseElector(api, cfg, clock)
        may_write = self.elector.is_leader if trust_lease else lambda: True
        self.loop = ControlLoop(
            clock=clock, source=load, actuator=KubernetesActuator(api, may_write=may_write),
            telemetry=Telemetry(DecisionStore()), is_leader=may_write,
        )  # fmt: skip
        self.loop.set_specs([spec])


async def leader_race(n: int, spec: ServingAutoscalerSpec, *, trust_lease: bool = True) -> Tally:
    """Two daemons on one Lease for n ticks of 5 s; every 6th tick the holder's lease requests
    fail for 4 ticks (its loop keeps ticking). Counts Deployment writes by a non-holder.
    `trust_lease=False` lets both actuators write regardless (the counter's self-check)."""
    tally = Tally(notes={"deployment_writes": 0, "handovers": 0})
    async with VersionedEmulator() as emu, kmock.Server(emu):
        emu.declare(HPAS, EVENTS)
        emu.seed(DEPLOYMENTS, NS, "resnet", deployment(replicas=2))
        clock, load = ManualClock(), SteadyLoad()
        daemons = [_Daemon(emu, clock, w, load, spec, trust_lease) for w in ("a", "b")]
        holders: list[str | None] = []
        muted: list[str] = []

        async def audit(req: Any) -> None:
            agent = req.headers.get("User-Agent", "")
            res = req.resource
            if res is not None and res.plural == "leases" and agent in muted:
                raise kmock.KubernetesError(status=503, reason="Injected", message="partition", details={})
            if res is not None and res.plural == "deployments" and req.method in ("PATCH", "PUT"):
                ls = _lease_spec(emu)
                renewed = datetime.fromisoformat(str(ls.get("renewTime", "1970-01-01T00:00:00Z"))).timestamp()
                live = clock.now_s() < renewed + float(ls.get("leaseDurationSeconds", 0))
                tally.notes["deployment_writes"] += 1
                tally.writes_by_non_holder += not (live and agent == f"daemon-{ls.get('holderIdentity')}")

        emu.before = audit
        try:
            for i in range(n):
                load.rate_rps = 500.0 + 400.0 * (i % 12)  # rises 11 ticks of 12: the holder must write
                if i % 6 == 3:
                    muted[:] = [f"daemon-{_lease_spec(emu).get('holderIdentity')}"]
                if i % 6 == 1:
                    muted.clear()
                t0 = time.perf_counter()
                await asyncio.gather(*(d.elector.step() for d in daemons))
                await asyncio.gather(*(d.loop.tick() for d in daemons))
                tally.answer(time.perf_counter() - t0, ok=sum(d.elector.is_leader() for d in daemons) <= 1)
                holder = _lease_spec(emu).get("holderIdentity")
                if holders and holder != holders[-1]:
                    tally.notes["handovers"] += 1
                holders.append(holder)
                await clock.advance(5.0)
        finally:
            emu.before = None
    return tally
