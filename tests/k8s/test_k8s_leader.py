"""Issue 15 (5): leader election on a real coordination.k8s.io/v1 Lease, two daemon processes.

Daemons A and B run in direct mode with two ServiceAccounts (the shipped one, and a second one
added to the shipped bindings), so the API server's audit log tells their writes apart. A leads
and scales; A is frozen (SIGSTOP: it can neither renew nor notice); B must take the Lease within
the lease duration (+ one retry period) and then actuate. When A resumes it must not write the
Deployment's scale again: its renew deadline has passed, so it knows it lost the Lease.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from controlplane import ControlPlane
from daemonproc import DAEMON_NS, DAEMON_SA, LEASE_NAME, DaemonProc
from hpastack import HIGH_LOAD, LOW_LOAD, HpaStack
from kubeapi import MANIFESTS, Kube, load_yaml, wait_for

pytestmark = pytest.mark.timeout(600)
NS, NAME = "leader", "resnet50"
SA_B = "tfs-autoscaler-b"
USER_A, USER_B = f"system:serviceaccount:{DAEMON_NS}:{DAEMON_SA}", f"system:serviceaccount:{DAEMON_NS}:{SA_B}"
LEASE_S, RENEW_S, RETRY_S = 8.0, 5.0, 1.0
ELECTION = ("--lease-duration-s", str(LEASE_S), "--renew-deadline-s", str(RENEW_S), "--retry-period-s", str(RETRY_S))


@pytest.fixture(scope="module")
def stack(kube: Kube, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HpaStack]:
    s = HpaStack(kube, control_plane, tmp_path_factory.mktemp("leader"), ns=NS, name=NAME, mode="direct")
    try:
        yield s.start(daemon=False)
    finally:
        s.stop()


def second_service_account(kube: Kube) -> None:
    """SA_B, bound exactly like the shipped ServiceAccount (an extra subject on every shipped binding)."""
    kube.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA_B, "namespace": DAEMON_NS}}])
    from daemonproc import workload_access

    bindings = [
        d
        for d in load_yaml(MANIFESTS / "base" / "rbac.yaml") + workload_access(NS, NAME)
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
    ]
    for b in bindings:
        b["subjects"] = [*b["subjects"], {"kind": "ServiceAccount", "name": SA_B, "namespace": DAEMON_NS}]
    kube.apply(bindings)


def test_standby_takes_over_a_frozen_leader_and_the_old_leader_never_writes_again(
    stack: HpaStack, kube: Kube, control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    assert stack.installed is not None
    second_service_account(kube)
    installed_b = dataclasses.replace(
        stack.installed, sa_kubeconfig=kube.sa_kubeconfig(DAEMON_NS, SA_B, tmp_path / "b.kubeconfig")
    )
    with (
        DaemonProc(stack.installed, tmp_path, "daemon-a", "--period-s", "1", *ELECTION, adapter=False) as a,
        DaemonProc(installed_b, tmp_path, "daemon-b", "--period-s", "1", *ELECTION, adapter=False) as b,
    ):
        wait_for("one leader", lambda: a.is_leader() or b.is_leader(), timeout_s=90)
        leader, standby, leader_user, standby_user = (a, b, USER_A, USER_B) if a.is_leader() else (b, a, USER_B, USER_A)
        wait_for("the standby's /metrics", lambda: standby.metrics(), timeout_s=60)
        assert not standby.is_leader()
        stack.set_load(HIGH_LOAD)
        wait_for(
            "the leader to scale up",
            lambda: [w for w in cp.scale_writes(NS, NAME) if w[1] == leader_user and (w[2] or 0) >= 3],
            timeout_s=180,
        )

        leader.signal(signal.SIGSTOP)
        t_frozen = time.time()
        wait_for("the standby to take the Lease", standby.is_leader, timeout_s=LEASE_S * 4, every_s=0.25)
        t_took = time.time()
        lease = kube.get("coordination.k8s.io/v1", "Lease", LEASE_NAME, DAEMON_NS)
        assert lease is not None and lease["spec"]["holderIdentity"] == standby.identity
        # taken over by a Lease write of the standby's account
        took = [w for w in cp.writes("leases", DAEMON_NS, LEASE_NAME) if w[1] == standby_user and w[3] < 300]
        t_acquired = min(t for t, *_ in took if t >= t_frozen)

        leader.signal(signal.SIGCONT)  # the old leader wakes up, past its renew deadline
        stack.set_load(LOW_LOAD)  # the decision falls: the new leader scales down
        wait_for(
            "the new leader to scale",
            lambda: [w for w in cp.scale_writes(NS, NAME) if w[1] == standby_user and w[0] > t_acquired],
            timeout_s=180,
        )
        wait_for("the old leader to report standby", lambda: leader.metrics() and not leader.is_leader(), timeout_s=60)
        assert leader.alive() and standby.alive()
        t_end = time.time()  # after this, stopping the new leader releases the Lease to the old one

    print(f"\ntakeover after {t_took - t_frozen:.1f} s (lease {LEASE_S:g} s, retry {RETRY_S:g} s)")
    assert t_took - t_frozen <= LEASE_S + 2 * RETRY_S + 2.0  # observed expiry + one retry + a metrics poll
    late = [w for w in cp.scale_writes(NS, NAME) if w[1] == leader_user and t_acquired <= w[0] < t_end]
    assert not late, f"the old leader wrote replicas after losing the Lease: {late}"
    old_lease_writes = [
        w for w in cp.writes("leases", DAEMON_NS, LEASE_NAME) if w[1] == leader_user and t_acquired <= w[0] < t_end
    ]
    assert all(code >= 400 for *_, code in old_lease_writes), old_lease_writes  # tried, refused with 409
