"""Writes each decision into the ServingAutoscaler custom resource's `.status`.

So `kubectl get servingautoscalers` shows Desired / Current / Reason (the CRD's printer columns)
and GitOps tools see what the daemon decided. Only for specs that came from a custom resource:
a spec loaded from a file has no object to write to, which shows up as a 404 on the first write
and is remembered (no retry every tick). Writes happen only when the shown values change, through
the `status` subresource with a JSON merge patch; failures are logged, never fatal.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from autoscaler.core.types import Decision
from autoscaler.spec.types import API_VERSION, ServingAutoscalerSpec

log = logging.getLogger(__name__)
GROUP, VERSION = API_VERSION.split("/")
PLURAL = "servingautoscalers"
REQUEST_TIMEOUT_S = 3.0  # a status write never holds the tick longer than this


def status_body(decision: Decision) -> dict[str, Any]:
    return {
        "status": {
            "desiredReplicas": decision.desired_replicas,
            "currentReplicas": decision.current_replicas,
            "valid": decision.valid,
            "binding": decision.binding.value,
            "reason": decision.reason[:1024],
            "observedRequestsPerSecond": decision.observed_rps,
            "forecastRequestsPerSecond": decision.forecast_rps,
            "capacityPerReplicaRequestsPerSecond": decision.capacity_rps,
            "batching": {
                "maxBatchSize": decision.batching.max_batch_size,
                "batchTimeoutMicros": decision.batching.batch_timeout_us,
                "numBatchThreads": decision.batching.num_batch_threads,
                "maxEnqueuedBatches": decision.batching.max_enqueued_batches,
            },
            "lastDecisionTime": datetime.fromtimestamp(decision.time_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }


class CrStatusWriter:
    """Patches `servingautoscalers/<name>/status` in the target's namespace when the decision changes."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._api = k8s.CustomObjectsApi(api_client)
        self._shown: dict[tuple[str, str], tuple[object, ...]] = {}
        self._absent: set[tuple[str, str]] = set()

    def write(self, spec: ServingAutoscalerSpec, decision: Decision) -> bool:
        """True if a status patch was sent and accepted."""
        key = (spec.target.namespace, spec.name)
        if key in self._absent:
            return False
        shown = (decision.desired_replicas, decision.current_replicas, decision.valid, decision.binding)
        if self._shown.get(key) == shown:
            return False
        try:
            self._api.patch_namespaced_custom_object_status(
                GROUP, VERSION, key[0], PLURAL, key[1], status_body(decision), _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status == 404:
                self._absent.add(key)  # a spec from a file: no custom resource to write to
                log.info(
                    "no ServingAutoscaler object for this spec; status not written",
                    extra={"target": str(decision.target)},
                )
            else:
                log.warning(
                    "cannot write ServingAutoscaler status",
                    extra={"target": str(decision.target), "status": exc.status, "error": str(exc.reason)[:200]},
                )
            return False
        self._shown[key] = shown
        return True

    def forget(self, spec: ServingAutoscalerSpec) -> None:
        """A spec changed source (e.g. a CR was created): try writing again."""
        key = (spec.target.namespace, spec.name)
        self._absent.discard(key)
        self._shown.pop(key, None)
