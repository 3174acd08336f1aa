"""`tfserving-autoscaler generate`: rewrite the generated manifests (CRD, dashboard, rules)."""

from __future__ import annotations

import argparse
from pathlib import Path

from autoscaler.generate.render import render_all, write_all


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root to write into")
    parser.add_argument("--check", action="store_true", help="exit 1 if any committed file is out of date")


def run(args: argparse.Namespace) -> int:
    if args.check:
        stale = [rel for rel, text in render_all().items() if _read(args.root / rel) != text]
        for rel in stale:
            print(f"out of date: {rel} (run `tfserving-autoscaler generate`)")
        return 1 if stale else 0
    for p in write_all(args.root):
        print(f"wrote {p}")
    return 0


def _read(p: Path) -> str | None:
    return p.read_text(encoding="utf-8") if p.exists() else None
