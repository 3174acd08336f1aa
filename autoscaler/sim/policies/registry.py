"""Explicit registry of simulated policies: name -> implementing class (one file each).

Every class is constructed as `cls(spec, **knobs)` where knobs may include its main knob
(`cls.knob`) and returns an object satisfying `autoscaler.sim.policies.base.Policy`.
Imports are lazy so `simulate --policies hpa-cpu` does not import statsmodels.
"""

from __future__ import annotations

import importlib
from typing import Any

from autoscaler.sim.policies.base import Policy
from autoscaler.spec.types import ServingAutoscalerSpec

POLICIES: dict[str, str] = {
    "predictive": "autoscaler.sim.policies.predictive:PredictivePolicy",
    "predictive-direct": "autoscaler.sim.policies.predictive:PredictiveDirectPolicy",
    "hpa-cpu": "autoscaler.sim.policies.hpa:HpaCpuPolicy",
    "hpa-rps": "autoscaler.sim.policies.hpa:HpaRpsPolicy",
    "keda": "autoscaler.sim.policies.keda:KedaPrometheusPolicy",
    "kpa": "autoscaler.sim.policies.kpa:KnativeKpaPolicy",
    "phpa": "autoscaler.sim.policies.phpa:PredictiveHpaPolicy",
    "static-peak": "autoscaler.sim.policies.static_peak:StaticPeakPolicy",
    "oracle": "autoscaler.sim.policies.oracle:OraclePolicy",
}


def names() -> list[str]:
    return list(POLICIES)


def policy_class(name: str) -> type[Any]:
    try:
        target = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; expected one of: {', '.join(POLICIES)}") from None
    module, _, attr = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attr)
    return cls


def settings_used(policy: Policy, knobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a replay ran with, for the report: the policy's own `settings()` when it has one
    (e.g. ours: headroom and forecast quantile resolved from the spec), else the value its main knob
    resolved to (a default included), plus every knob given explicitly."""
    own = getattr(policy, "settings", None)
    used: dict[str, Any] = dict(own()) if callable(own) else {}
    if not used and hasattr(policy, policy.knob):
        used[policy.knob] = getattr(policy, policy.knob)
    for k, v in (knobs or {}).items():
        used.setdefault(k, v)
    return used


def create(name: str, spec: ServingAutoscalerSpec, **knobs: Any) -> Policy:
    policy: Policy = policy_class(name)(spec, **knobs)
    return policy
