"""Hostile spec files: each is a SpecError naming the file, never a hang, crash or traceback.

Whoever can edit the daemon's spec ConfigMap can write any bytes into it. Billion laughs, deep
nesting, huge numbers, binary files, duplicate keys and oversize files must each be refused by
`validate` (which still checks every other file) and by the spec watcher (which keeps serving the
last good spec and keeps reloading later edits).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from autoscaler.commands import validate
from autoscaler.runtime.clock import ManualClock
from autoscaler.runtime.specwatch import SpecWatcher
from autoscaler.spec import SpecError, load_specs, parse_spec, parse_specs_text
from autoscaler.spec.types import ServingAutoscalerSpec

GOOD = """\
apiVersion: autoscaling.tfserving.dev/v1alpha1
kind: ServingAutoscaler
metadata: {name: resnet, namespace: ml}
spec:
  target: {deployment: resnet, modelName: resnet}
  slo: {latencyMs: 100}
  maxReplicas: MAX
"""


def laughs(levels: int = 6) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        refs = ",".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    bomb = "\n".join("  " + line for line in lines)
    return GOOD.replace("MAX", "10") + f"  profile:\n    source: x\n  extra:\n{bomb}\n"


HOSTILE: dict[str, tuple[bytes, str]] = {
    "laughs.yaml": (laughs().encode(), "alias"),
    "deep.yaml": (("x: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested deeper"),
    "digits.yaml": (GOOD.replace("MAX", "9" * 5000).encode(), "number longer"),
    "binary.yaml": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + bytes(range(256)), "not UTF-8"),
    "dupes.yaml": ((GOOD.replace("MAX", "10") + "  maxReplicas: 10000\n").encode(), "duplicate key 'maxReplicas'"),
    "huge.yaml": (GOOD.replace("MAX", "10").encode() + b"#" * (2 << 20), "larger than"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_file_is_a_spec_error_naming_the_file(tmp_path: Path, name: str) -> None:
    data, expected = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(SpecError) as info:
        load_specs(path)
    (problem,) = info.value.problems
    assert problem.startswith(str(path)) and expected in problem


def test_merge_keys_are_not_duplicates() -> None:
    text = GOOD.replace("MAX", "10") + "  startup:\n    <<: {jitterCv: 0.3}\n    warmupSeconds: 5\n"
    (spec,) = parse_specs_text(text)
    assert spec.startup.jitter_cv == 0.3 and spec.startup.warmup_s == 5


def test_validate_checks_every_file_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for name, (data, _) in sorted(HOSTILE.items()):
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    (tmp_path / "ok.yaml").write_text(GOOD.replace("MAX", "10"))
    files.append(tmp_path / "ok.yaml")
    rc = validate.run(argparse.Namespace(files=files, quiet=False))
    out, err = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out + err
    assert f"{tmp_path / 'ok.yaml'}: ok: resnet" in out  # the good file after six bad ones
    assert f"{len(HOSTILE)} of {len(files)} file(s) invalid" in err
    for name in HOSTILE:
        assert str(tmp_path / name) in err


@pytest.mark.parametrize("name", ["deep.yaml", "laughs.yaml", "binary.yaml", "digits.yaml"])
def test_the_watcher_keeps_the_last_good_spec_and_keeps_reloading(tmp_path: Path, name: str) -> None:
    spec_file = tmp_path / "resnet.yaml"
    spec_file.write_text(GOOD.replace("MAX", "10"))
    published: list[list[ServingAutoscalerSpec]] = []
    w = SpecWatcher(clock=ManualClock(), directory=tmp_path, on_change=published.append)
    w.poll()
    spec_file.write_bytes(HOSTILE[name][0])
    w.poll()  # must not raise (a RecursionError here used to stop every later reload)
    assert [s.max_replicas for s in published[-1]] == [10]
    assert HOSTILE[name][1] in w.errors[str(spec_file)][0]
    spec_file.write_text(GOOD.replace("MAX", "12") + "# fixed\n")
    w.poll()
    assert [s.max_replicas for s in published[-1]] == [12]
    assert w.errors == {}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            "  profile:\n    batchLatency:\n      - {batchSize: 1, latencyMs: 5}\n"
            "      - {batchSize: 8, latencyMs: .inf}\n",
            "spec.profile.batchLatency[1].latencyMs",
        ),
        (
            "  batching:\n    bounds:\n      maxBatchSize: {min: 1, max: 1000000000000}\n",
            "spec.batching.bounds: maxBatchSize.max (1000000000000) must be <= 65536",
        ),
    ],
    ids=["infinite-latency", "huge-batch-bound"],
)
def test_absurd_numbers_are_refused(extra: str, field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_specs_text(GOOD.replace("MAX", "10") + extra, "x.yaml")
    assert any(field in p for p in info.value.problems), info.value.problems


def test_only_the_operators_files_choose_file_paths() -> None:
    text = GOOD.replace("MAX", "10") + "  outputs: {decisionsPath: /etc/cron.d/evil}\n"
    (spec,) = parse_specs_text(text, "operator.yaml")  # the daemon's own spec file: allowed
    assert spec.outputs.decisions_path == "/etc/cron.d/evil"
    import yaml

    with pytest.raises(SpecError) as info:
        parse_spec(yaml.safe_load(text), "cr:ml/resnet", custom_resource=True)
    (problem,) = info.value.problems
    assert "spec.outputs.decisionsPath" in problem and "only the daemon's own spec files" in problem
