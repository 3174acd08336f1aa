"""Build hooks only: compile the KEDA external-scaler proto, ship the what-if inputs as package data.

All package metadata lives in pyproject.toml. This file adds two steps to `build_py`:

* run grpcio-tools' protoc on autoscaler/adapter/proto/externalscaler.proto and write the generated
  modules into autoscaler/adapter/_generated/ inside the build (wheel) tree, or into the source tree
  for editable installs. Generated code is never committed; autoscaler/adapter/_protogen.py also
  compiles lazily on first import when the generated modules are missing or stale.
* copy the repository's `simulations/` (scenarios, traces, SOURCES.md) and `examples/` (specs) into the
  build tree as autoscaler/data/simulations/ and autoscaler/data/examples/, so `simulate` and `sweep`
  work from an installed wheel (autoscaler/sim/shipped.py finds them). Traces over 256 KiB are stored
  xz-compressed (`.csv.xz`; the loader detects the format, the name resolves without the suffix): the
  1 s NASA trace is 5.7 MB gzipped, 1.2 MB as xz. Editable installs read the repository's directories.
"""

from __future__ import annotations

import gzip
import importlib.util
import lzma
import shutil
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTOGEN = ROOT / "autoscaler" / "adapter" / "_protogen.py"
DATA_DIRS = ("simulations", "examples")  # repository directories shipped under autoscaler/data/
XZ_OVER_BYTES = 256 * 1024


def _load_protogen() -> ModuleType:
    """Load _protogen.py by path: the package itself is not importable before it is installed."""
    spec = importlib.util.spec_from_file_location("_tfs_autoscaler_protogen", PROTOGEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_data(dest: Path) -> None:
    """Copy DATA_DIRS into `dest` (the build tree's autoscaler/data/), xz-compressing big traces."""
    for name in DATA_DIRS:
        src_dir = ROOT / name
        if not src_dir.is_dir():  # building from an sdist made without them
            raise SystemExit(f"setup.py: {src_dir} is missing: the wheel would ship no what-if inputs")
        shutil.rmtree(dest / name, ignore_errors=True)  # a reused build/ must not keep removed files
        for src in sorted(p for p in src_dir.rglob("*") if p.is_file()):
            rel = src.relative_to(ROOT)
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if src.name.endswith((".csv", ".csv.gz")) and src.stat().st_size > XZ_OVER_BYTES:
                raw = src.read_bytes()
                if src.name.endswith(".gz"):
                    raw = gzip.decompress(raw)
                out.with_name(src.name.removesuffix(".gz") + ".xz").write_bytes(lzma.compress(raw, preset=9))
            else:
                shutil.copyfile(src, out)


class BuildPyWithProto(build_py):
    """`build_py` that also generates the gRPC stubs and copies the what-if inputs."""

    def run(self) -> None:
        super().run()
        if self.dry_run:
            return
        protogen = _load_protogen()
        if getattr(self, "editable_mode", False):
            protogen.generate(protogen.GENERATED_DIR, protogen.PROTO_FILE)
        else:
            protogen.generate(Path(self.build_lib) / "autoscaler" / "adapter" / "_generated", protogen.PROTO_FILE)
            _copy_data(Path(self.build_lib) / "autoscaler" / "data")


setup(cmdclass={"build_py": BuildPyWithProto})
