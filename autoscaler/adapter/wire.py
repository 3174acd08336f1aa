"""Kubernetes wire-format helpers for the metrics APIs: quantities, timestamps, Status, discovery.

Owned here so that every byte the HPA and the kube-aggregator decode is produced in one place and
matches k8s.io/metrics `pkg/apis/custom_metrics/v1beta{1,2}/types.go` and
`pkg/apis/external_metrics/v1beta1/types.go` exactly (kind/apiVersion on every body, RFC 3339 second-precision
UTC timestamps, integer milli-unit quantity strings). Pure stdlib; times are passed in, never read.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

CUSTOM_GROUP = "custom.metrics.k8s.io"
EXTERNAL_GROUP = "external.metrics.k8s.io"
CUSTOM_VERSIONS = ("v1beta2", "v1beta1")  # preferred first
EXTERNAL_VERSIONS = ("v1beta1",)
GROUP_VERSIONS: dict[str, tuple[str, ...]] = {CUSTOM_GROUP: CUSTOM_VERSIONS, EXTERNAL_GROUP: EXTERNAL_VERSIONS}

# Accept-header markers of aggregated discovery (apidiscovery.k8s.io v2 / v2beta1); we answer 406.
AGGREGATED_DISCOVERY_MARKER = "as=APIGroupDiscoveryList"


def milli_units(value: float) -> int:
    """ceil(value*1000), the way `Quantity.MilliValue()` reads it; rounded first so 0.1*3 stays 300."""
    return math.ceil(round(value * 1000.0, 6))


def quantity(value: float) -> str:
    """A resource.Quantity string: plain integer when whole, otherwise integer milli-units ("1500m").

    Rounds *up* to the milli-unit, so what the HPA reads (MilliValue) is never below our number.
    """
    milli = milli_units(value)
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"


def rfc3339(time_s: float) -> str:
    """metav1.Time: RFC 3339, second precision, UTC, `Z` suffix (times before 1970 clamp to 0)."""
    return _rfc3339_whole(max(0, int(time_s)))


@functools.lru_cache(maxsize=4096)
def _rfc3339_whole(time_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_s))


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status failure body."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def api_group(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUP_VERSIONS[group]]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(g) for g in GROUP_VERSIONS]}


def api_resource_list(group: str, version: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}",
        "resources": resources,
    }


def api_resource(name: str, *, namespaced: bool, kind: str) -> dict[str, Any]:
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get"]}
