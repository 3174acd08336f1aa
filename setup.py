"""Build hook only: compile the KEDA external-scaler proto at build time.

All package metadata lives in pyproject.toml. This file adds one step to `build_py`: run
grpcio-tools' protoc on autoscaler/adapter/proto/externalscaler.proto and write the generated
modules into autoscaler/adapter/_generated/ inside the build (wheel) tree, or into the source tree
for editable installs. Generated code is never committed; autoscaler/adapter/_protogen.py also
compiles lazily on first import when the generated modules are missing or stale.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTOGEN = ROOT / "autoscaler" / "adapter" / "_protogen.py"


def _load_protogen() -> ModuleType:
    """Load _protogen.py by path: the package itself is not importable before it is installed."""
    spec = importlib.util.spec_from_file_location("_tfs_autoscaler_protogen", PROTOGEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithProto(build_py):
    """`build_py` that also generates the gRPC stubs."""

    def run(self) -> None:
        super().run()
        if self.dry_run:
            return
        protogen = _load_protogen()
        if getattr(self, "editable_mode", False):
            protogen.generate(protogen.GENERATED_DIR, protogen.PROTO_FILE)
        else:
            protogen.generate(Path(self.build_lib) / "autoscaler" / "adapter" / "_generated", protogen.PROTO_FILE)


setup(cmdclass={"build_py": BuildPyWithProto})
