"""The composition root: parses the command line and hands off to one command module.

Each subcommand lives in its own module under `autoscaler.commands` and exposes
`register(subparsers)`; the registry below is explicit so `--help` lists them in order.
Modules are imported lazily so `validate` does not pay for statsmodels or the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command name -> module under autoscaler.commands; order is the --help order
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "simulate": "simulate",
    "sweep": "sweep",
    "forecast": "forecast",
    "validate": "validate",
    "run": "run",
    "emulate": "emulate",
    "generate": "generate",
}

HELP: dict[str, str] = {
    "demo": "run the real daemon loop against a local emulated TF Serving cluster (the embedded default)",
    "simulate": "replay a traffic trace through our policy and the baselines; write a report",
    "sweep": "tune every policy's main knob on a trace and compare cost at the SLO goal",
    "forecast": "fit the forecasters on a trace and print a backtest / forecast",
    "validate": "validate ServingAutoscaler spec files",
    "run": "run the in-cluster daemon",
    "emulate": "start TF Serving emulator replicas (and optionally send Poisson load at them)",
    "generate": "regenerate the generated manifests (CRD, Grafana dashboard, Prometheus rules)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfserving-autoscaler",
        description="SLO-driven predictive autoscaler for TensorFlow Serving on Kubernetes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=HELP[name], description=HELP[name])
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # First pass finds the command; the command module then adds its own arguments.
    if not argv:  # no command is a usage error (exit 2), with the list of commands
        parser.print_help(sys.stderr)
        return 2
    if argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # --help exits 0, an unknown command exits 2 with argparse's message
        return 2
    name = argv[0]
    mod = importlib.import_module(f"autoscaler.commands.{COMMANDS[name]}")
    sub = argparse.ArgumentParser(prog=f"tfserving-autoscaler {name}", description=HELP[name])
    mod.register(sub)
    args = sub.parse_args(argv[1:])
    rc: int = mod.run(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
