"""`tfserving-autoscaler validate FILE...`: check ServingAutoscaler spec files.

Prints one line per valid spec and every problem of every invalid file (field path, bad
value, allowed range); exits 1 if any file is invalid, so it can gate CI and GitOps pipelines.
Every file given is checked, whatever the others contain, and no input prints a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoscaler.spec import SpecError, load_specs


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="spec YAML files (multi-doc ok)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        try:
            specs = load_specs(path)
        except SpecError as exc:
            bad += 1
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        except Exception as exc:  # a bug, not the user's fault: one line, and check the next file
            bad += 1
            print(f"{path}: cannot be checked: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
            continue
        if not args.quiet:
            for s in specs:
                t = s.target
                models = f"model {t.model_name}" if len(t.model_names) == 1 else f"models {', '.join(t.model_names)}"
                print(
                    f"{path}: ok: {s.name} -> {t.namespace}/{t.deployment} ({models}), "
                    f"mode {s.mode.value}, replicas [{s.min_replicas}, {s.max_replicas}], "
                    f"p{s.slo.latency_quantile * 100:g} <= {s.slo.latency_ms:g} ms"
                )
    if bad:
        print(f"{bad} of {len(args.files)} file(s) invalid", file=sys.stderr)
        return 1
    return 0
