"""Batching rollout against kmock: the operator's file is edited in place and read back on start.

Real HTTP, official client. The ConfigMap holds a file written by hand (allowed_batch_sizes,
pad_variable_length_inputs, a custom thread pool, a field newer than our message); the rollout
must change only the tuned values, keep allowed_batch_sizes consistent with max_batch_size, and a
new actuator (a restarted daemon or a new leader) must read what is in effect from the cluster
rather than assume `batching.initial`. A malformed file is refused, naming the ConfigMap key.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from test_actuators_kube import make_decision, make_spec, setup
from test_runtime_kubeemu import CONFIGMAPS, DEPLOYMENTS, EVENTS, VersionedEmulator, api_client_for

from autoscaler.actuators import batching_proto
from autoscaler.actuators.base import BatchingOutcome
from autoscaler.actuators.batching import HASH_ANNOTATION, PBTXT_KEY
from autoscaler.actuators.kube import KubernetesActuator
from autoscaler.spec.types import BatchingParams

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)

OPERATOR_FILE = """# written by the platform team
max_batch_size { value: 32 }
batch_timeout_micros { value: 1000 }
num_batch_threads { value: 8 }
thread_pool_name { value: "resnet_pool" }
allowed_batch_sizes: [8, 16, 32]
pad_variable_length_inputs: true
max_execution_batch_size { value: 32 }
"""
NEW = BatchingParams(max_batch_size=64, batch_timeout_us=2_000, num_batch_threads=8, max_enqueued_batches=100)


def seed_file(emu: VersionedEmulator, text: str) -> None:
    emu.seed(
        CONFIGMAPS,
        "ml",
        "resnet-batching",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "resnet-batching", "namespace": "ml"},
         "data": {PBTXT_KEY: text}},
    )  # fmt: skip


async def test_rollout_edits_the_operators_file_and_a_new_leader_reads_it(kmock: VersionedEmulator) -> None:
    act, _ = setup(kmock, replicas=3)
    seed_file(kmock, OPERATOR_FILE)
    start = await asyncio.to_thread(act.read_replicas, make_spec())
    assert start is not None and start.batching == BatchingParams(32, 1_000, 8, 100)  # not batching.initial

    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(3, current=3, batching=NEW,
                                                                          batching_changed=True))  # fmt: skip
    assert result.batching is BatchingOutcome.ROLLED_OUT
    cm = kmock.read_obj(CONFIGMAPS, "ml", "resnet-batching")
    assert cm is not None
    text = cm["data"][PBTXT_KEY]
    want = (OPERATOR_FILE.replace("max_batch_size { value: 32 }", "max_batch_size { value: 64 }")
            .replace("{ value: 1000 }", "{ value: 2000 }").replace("[8, 16, 32]", "[8, 16, 32, 64]")
            + "max_enqueued_batches { value: 100 }\n")  # fmt: skip
    assert text == want
    msg = batching_proto.parse(text)
    assert msg.thread_pool_name.value == "resnet_pool" and msg.pad_variable_length_inputs
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None
    digest = dep["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
    assert digest == hashlib.sha256(text.encode()).hexdigest()[:16]
    (event,) = kmock.all(EVENTS, "ml")
    assert event["reason"] == "BatchingRollout"
    assert "allowed_batch_sizes [8, 16, 32] -> [8, 16, 32, 64]" in event["message"]

    new_leader = KubernetesActuator(api_client_for(kmock))
    status = await asyncio.to_thread(new_leader.read_replicas, make_spec())
    assert status is not None and status.batching == NEW


async def test_malformed_file_is_refused_naming_the_key(kmock: VersionedEmulator) -> None:
    act, _ = setup(kmock, replicas=3)
    bad = "max_batch_size: 32\nbatch_timeout_micros { value: 1000 }\n"  # Int64Value needs braces
    seed_file(kmock, bad)
    status = await asyncio.to_thread(act.read_replicas, make_spec())
    assert status is not None and status.batching is None  # unknown, not guessed

    result = await asyncio.to_thread(act.apply, make_spec(), make_decision(3, current=3, batching=NEW,
                                                                          batching_changed=True))  # fmt: skip
    assert result.batching is BatchingOutcome.REFUSED_MALFORMED_FILE
    assert "ConfigMap ml/resnet-batching key batching_parameters.pbtxt" in result.message
    assert 'Expected "{"' in result.message
    cm = kmock.read_obj(CONFIGMAPS, "ml", "resnet-batching")
    assert cm is not None and cm["data"][PBTXT_KEY] == bad
    dep = kmock.read_obj(DEPLOYMENTS, "ml", "resnet")
    assert dep is not None and dep["metadata"]["generation"] == 1  # no rollout
    (event,) = kmock.all(EVENTS, "ml")
    assert event["type"] == "Warning" and PBTXT_KEY in event["message"]
