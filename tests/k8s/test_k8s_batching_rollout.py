"""Issue 15 (6): the batching rollout makes the real Deployment controller roll the pods, never below capacity.

`actuators/batching.py:BatchingRollout` runs with the daemon's ServiceAccount token (shipped RBAC
plus the example's per-namespace Role) against a Deployment with `maxUnavailable: 0, maxSurge: 1`
whose pods the emulator kubelet runs. It writes the pbtxt into the batching ConfigMap and the hash
into the pod template; the real Deployment controller must create a new ReplicaSet whose pods
carry the hash, replace every old pod, and never let available replicas drop below spec.replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from controlplane import ControlPlane
from daemonproc import DAEMON_NS, DAEMON_SA
from e2eworkload import parsed
from hpastack import HpaStack
from kubeapi import Kube, wait_for

from autoscaler.actuators.base import BatchingOutcome
from autoscaler.actuators.batching import HASH_ANNOTATION, PBTXT_KEY, BatchingRollout, batching_hash
from autoscaler.actuators.events import EventRecorder
from autoscaler.core.types import Binding, Decision, TargetKey
from autoscaler.spec.types import BatchingParams

pytestmark = pytest.mark.timeout(600)
NS, NAME, CONFIGMAP = "batching", "resnet50", "resnet50-batching"  # the example Role's resource names
REPLICAS = 2


@pytest.fixture(scope="module")
def stack(kube: Kube, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HpaStack]:
    s = HpaStack(kube, control_plane, tmp_path_factory.mktemp("batching"), ns=NS, name=NAME, mode="direct")
    s.cr["spec"]["target"]["batchingConfigMap"] = CONFIGMAP
    s.cr["spec"]["batching"]["tune"] = True
    s.cr["spec"]["batching"]["bounds"] = {
        "maxBatchSize": {"min": 1, "max": 64},
        "batchTimeoutMicros": {"min": 0, "max": 200_000},  # dilated × 20 like the profile
        "numBatchThreads": {"min": 1, "max": 4},
        "maxEnqueuedBatches": {"min": 1, "max": 100},
    }
    s.cr["spec"]["minReplicas"] = REPLICAS
    try:
        yield s.start(daemon=False)
    finally:
        s.stop()


def test_batching_rollout_creates_a_new_replicaset_without_losing_capacity(
    stack: HpaStack, kube: Kube, control_plane: ControlPlane
) -> None:
    assert stack.installed is not None
    # the example ships the ConfigMap (manifests/examples/tfserving/configmaps.yaml): the Role may
    # update it by name but not create it
    kube.apply(
        [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP, "namespace": NS}, "data": {}}]
    )
    kube.apps.patch_namespaced_deployment_scale(NAME, NS, {"spec": {"replicas": REPLICAS}})

    def settled() -> bool:
        st = kube.apps.read_namespaced_deployment(NAME, NS).status
        return (
            (st.available_replicas or 0) == REPLICAS
            and (st.updated_replicas or 0) == REPLICAS
            and st.replicas == REPLICAS
        )

    wait_for("2 available pods before the rollout", settled, timeout_s=120)
    old_rs = {rs.metadata.name for rs in kube.apps.list_namespaced_replica_set(NS).items}

    spec = parsed(stack.cr)
    new = BatchingParams(max_batch_size=32, batch_timeout_us=80_000, num_batch_threads=2, max_enqueued_batches=4)
    decision = Decision(
        target=TargetKey(NS, NAME),
        time_s=time.time(),
        desired_replicas=REPLICAS,
        current_replicas=REPLICAS,
        valid=True,
        reason="e2e: larger batches",
        binding=Binding.NONE,
        batching=new,
        batching_changed=True,
    )
    sa_api = kube.client_for(stack.installed.sa_kubeconfig)
    outcome, msg = BatchingRollout(sa_api, EventRecorder(sa_api)).apply(spec, decision)
    assert outcome is BatchingOutcome.ROLLED_OUT, msg

    digest = batching_hash(new.to_pbtxt())
    cm = kube.core.read_namespaced_config_map(CONFIGMAP, NS)
    assert cm.data[PBTXT_KEY] == new.to_pbtxt()
    min_available = REPLICAS

    def rolled() -> bool:
        nonlocal min_available
        st = kube.apps.read_namespaced_deployment(NAME, NS).status
        min_available = min(min_available, st.available_replicas or 0)
        rs = kube.apps.list_namespaced_replica_set(NS).items
        fresh = [r for r in rs if r.metadata.name not in old_rs]
        old_left = sum(r.status.replicas or 0 for r in rs if r.metadata.name in old_rs)
        return bool(
            fresh
            and (fresh[0].spec.template.metadata.annotations or {}).get(HASH_ANNOTATION) == digest
            and (fresh[0].status.ready_replicas or 0) == REPLICAS
            and old_left == 0
        )

    wait_for("the new ReplicaSet to replace every old pod", rolled, timeout_s=180, every_s=0.25)
    assert min_available >= REPLICAS  # maxUnavailable 0: never below spec.replicas available
    pods = kube.core.list_namespaced_pod(NS, label_selector=f"app={NAME}").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    assert live and all((p.metadata.annotations or {}).get(HASH_ANNOTATION) == digest for p in live)
    events = kube.core.list_namespaced_event(NS, field_selector="reason=BatchingRollout").items
    assert events and events[0].source.component == "tfserving-autoscaler"
    # a second apply with the same parameters is recognised as done, by the same least-privilege token
    outcome2, _ = BatchingRollout(sa_api, EventRecorder(sa_api)).apply(spec, decision)
    assert outcome2 is BatchingOutcome.ALREADY_APPLIED
    sa_user = f"system:serviceaccount:{DAEMON_NS}:{DAEMON_SA}"
    patches = [w for w in control_plane.writes("deployments", NS, NAME) if w[1] == sa_user and w[2] == "patch"]
    assert [code for *_, code in patches] == [200]  # one template patch, by the daemon's account
