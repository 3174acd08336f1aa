"""A simulated policy that always asks for the same replica count (shared by the simulator tests)."""

from __future__ import annotations

from typing import ClassVar

from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput


class Fixed:
    name: ClassVar[str] = "fixed"
    knob: ClassVar[str] = "replicas"
    clairvoyant: ClassVar[bool] = False

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.period_s = 15.0
        self.ctx: PolicyContext | None = None  # what the engine started it with

    def start(self, ctx: PolicyContext) -> None:
        self.ctx = ctx

    def decide(self, view: ClusterView) -> PolicyOutput:
        return PolicyOutput(self.replicas)
