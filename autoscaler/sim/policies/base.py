"""The one small Protocol every simulated policy implements (ours and the baselines).

A policy is created with the spec and its main knob, started once with a PolicyContext,
then asked for a decision every `period_s` seconds of simulated time with a ClusterView.
It keeps its own state; the engine applies its output like the HPA controller or our daemon
would (patch scale.spec.replicas; pods then start with the spec's startup delay).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput


class Policy(Protocol):
    name: ClassVar[str]
    knob: ClassVar[str]  # name of the main tuning knob (swept by `sweep`)
    clairvoyant: ClassVar[bool]  # True only for oracle / static-peak: may read future_rps
    period_s: float  # decision period, seconds of simulated time

    def start(self, ctx: PolicyContext) -> None: ...

    def decide(self, view: ClusterView) -> PolicyOutput: ...
