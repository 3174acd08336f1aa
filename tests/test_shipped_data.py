"""The what-if inputs (scenarios, traces, example specs) work from an installed wheel, not only a checkout.

The slow test builds the wheel (`pip wheel --no-deps`, setup.py's build hook copies the data),
installs it with `--no-deps` into a fresh venv outside the checkout whose dependencies come from
the running interpreter's site-packages through a `.pth` file (offline, no registry), and runs
`simulate` and `sweep` from a temporary directory with no PYTHONPATH.
"""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from autoscaler.sim import shipped, traces, workload
from autoscaler.sim.workload import load_trace, resolve_trace

ROOT = Path(__file__).resolve().parents[1]


def test_checkout_uses_the_repository_directories() -> None:
    assert shipped.SCENARIO_DIR == ROOT / "simulations"
    assert shipped.DEFAULT_SPEC == ROOT / "examples" / "resnet50-t4.yaml"
    assert shipped.default_runs_dir() == ROOT / "runs"


def test_xz_trace_found_by_name_and_read_like_the_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = ROOT / "simulations" / "traces" / "nasa_http_jul95_60s.csv"
    (tmp_path / "nasa_http_jul95_60s.csv.xz").write_bytes(lzma.compress(src.read_bytes()))
    monkeypatch.setattr(traces, "TRACES_DIR", tmp_path)
    found = resolve_trace("nasa_http_jul95_60s.csv")  # the scenario's name, as in simulations/nasa-60s-7d.yaml
    assert found == tmp_path / "nasa_http_jul95_60s.csv.xz"
    assert traces.shipped_traces() == ["nasa_http_jul95_60s.csv.xz"]
    a = load_trace(found, start_s=86_400, duration_s=3_600)
    b = load_trace(src, start_s=86_400, duration_s=3_600)
    assert a.name == b.name == "nasa_http_jul95_60s"
    assert a.counts is not None and b.counts is not None
    assert (a.counts == b.counts).all() and a.counts.sum() > 0


def test_corrupt_xz_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "t.csv.xz"
    bad.write_bytes(b"\xfd7zXZ\x00" + b"junk" * 10)
    with pytest.raises(workload.TraceError, match=r"t\.csv\.xz: corrupt xz data"):
        load_trace(bad)


def _clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH: the checkout on it (and its build's egg-info) would make pip
    think the package is installed already, and would shadow the installed wheel."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _venv_with_wheel(tmp: Path) -> Path:
    """Build the wheel, make a venv whose deps are this interpreter's site-packages, install it."""
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        cwd=tmp,
        env=_clean_env(),
    )
    (whl,) = wheels.glob("tfserving_autoscaler-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert "autoscaler/data/simulations/traces/nasa_http_jul95_1s.csv.xz" in names
    assert "autoscaler/data/examples/resnet50-t4.yaml" in names
    assert whl.stat().st_size < 4_000_000, f"wheel is {whl.stat().st_size} bytes"
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(whl)]
    subprocess.run(pip, check=True, cwd=tmp, env=_clean_env())
    # Then the dependencies: the running interpreter's site-packages, appended after the venv's own, so
    # the installed wheel wins and the dev environment's editable-install hook (a .pth there) is not run.
    # (Written after the install: pip would otherwise see the dev environment's editable install.)
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.slow
def test_installed_wheel_runs_simulate_and_sweep_outside_the_checkout(tmp_path: Path) -> None:
    venv = _venv_with_wheel(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**_clean_env(), "MPLBACKEND": "Agg"}

    def cli(*args: str) -> str:
        r = subprocess.run(
            [str(venv / "bin" / "tfserving-autoscaler"), *args], cwd=work, env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, f"{args}: rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import autoscaler; print(autoscaler.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where
    # The default scenario by name (its trace and ../examples spec from package data), runs under ./runs.
    cli("simulate", "azure-functions-8h", "--policies", "hpa-rps,oracle", "--duration-s", "3600")
    assert (work / "runs" / "azure-functions-8h" / "summary.json").is_file()
    # --trace without --spec: the default spec; a trace shipped xz-compressed, named as in the repository.
    cli("simulate", "--trace", "worldcup98_60s.csv", "--policies", "hpa-rps", "--duration-s", "3600", "--out", "wc")
    assert (work / "wc" / "summary.json").is_file()
    out = cli("sweep", "nasa-60s-7d", "--policies", "hpa-rps", "--duration-s", "3600", "--history-s", "0", "--jobs=1")
    assert (work / "runs" / "sweep.json").is_file(), out


def test_dockerfile_copies_survive_dockerignore() -> None:
    """Every context path the Dockerfile COPYs exists and is not excluded by .dockerignore (which must
    keep .venv, runs/ and .git out of the context)."""
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "runs", ".git"} <= ignored
    copied: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            copied += parts[1:-1]
    assert {"setup.py", "MANIFEST.in", "autoscaler", "simulations", "examples"} <= set(copied)
    for src in copied:
        assert (ROOT / src).exists(), f"Dockerfile COPYs {src}, which is not in the repository"
        assert src not in ignored, f"Dockerfile COPYs {src}, which .dockerignore excludes"
