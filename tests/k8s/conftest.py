"""Fixtures of the e2e suite against a real Kubernetes v1.20.2 control plane (tests/k8s/controlplane.py).

`control_plane` is session-scoped: one etcd + kube-apiserver + kube-controller-manager for all
tests here (each test uses its own namespaces). Without the binaries the tests skip with one line;
with `TFSA_REQUIRE_K8S=1` (set by .ci/run) they fail instead, so CI never silently skips them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from controlplane import ControlPlane, missing_binaries
from kubeapi import Kube


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    why = missing_binaries()
    if why is not None:
        if os.environ.get("TFSA_REQUIRE_K8S"):  # set by .ci/run: CI must never skip these
            pytest.fail(why)
        pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix="tfsa-k8s-") as d, ControlPlane(Path(d)) as cp:
        yield cp


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    return Kube(control_plane)
