"""Where the shipped what-if inputs live: scenarios, traces and example specs, installed or in a checkout.

Owned here so `simulate`, `sweep` and `simulate --from-prometheus` find the same files whether they
run from a git checkout or from an installed wheel / the Docker image, where no repository exists.

* Installed: the build copies `simulations/` (scenario YAML, `traces/`) and `examples/` into the
  package as `autoscaler/data/simulations/` and `autoscaler/data/examples/` (setup.py's build hook;
  the bigger traces xz-compressed there). They are found with `importlib.resources`; installed
  wheels are always unpacked on disk, so the resource is a real directory.
* Checkout (PYTHONPATH or `pip install -e .`): the package holds no copy; the repository's own
  directories are used.

The relative layout is the same in both (`simulations/../examples/`), so a scenario's
`spec: ../examples/resnet50-t4.yaml` resolves either way.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _data_dir(name: str) -> Path:
    """`autoscaler/data/<name>` when installed with it, else the checkout's `<name>/`."""
    pkg = resources.files("autoscaler").joinpath("data", name)
    if isinstance(pkg, Path) and pkg.is_dir():
        return pkg
    return REPO_ROOT / name


SCENARIO_DIR = _data_dir("simulations")
TRACES_DIR = SCENARIO_DIR / "traces"
EXAMPLES_DIR = _data_dir("examples")
DEFAULT_SPEC = EXAMPLES_DIR / "resnet50-t4.yaml"


def in_checkout() -> bool:
    """True when the package runs from a source checkout (the repository's pyproject.toml is beside it)."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "autoscaler").is_dir()


def default_runs_dir() -> Path:
    """Where runs go without --out: the checkout's `runs/`, else `./runs` under the working directory
    (an installed package must not write into site-packages)."""
    return REPO_ROOT / "runs" if in_checkout() else Path.cwd() / "runs"
