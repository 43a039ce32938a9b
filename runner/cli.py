"""`parallelrun`: run a job here, validate a resource, or start the operator."""

from __future__ import annotations

import argparse
import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

from .spec import SpecError, load_spec_file


def _run(args, console: Console) -> int:
    from .local import LocalRunError, run_local
    from .plan import PlanError

    # Warnings (retried attempts) print above the progress bar; worker output goes to log files.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)])
    try:
        run_local(args.job, args.set, fresh=args.fresh, console=console)
    except SpecError as e:
        console.print(str(e), style="red", markup=False, highlight=False)
        return 2
    except PlanError as e:
        console.print(f"cannot plan: {e}", style="red", markup=False, highlight=False)
        return 2
    except LocalRunError as e:
        console.print(f"failed: {e}", style="red", markup=False, highlight=False)
        return e.exit_code
    return 0


def _validate(args, console: Console) -> int:
    status = 0
    for path in args.job:
        try:
            spec = load_spec_file(path)
        except SpecError as e:
            console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
            status = 2
        else:
            console.print(f"{path}: valid BatchInferenceJob {spec.name!r} ({spec.input.type} input)",
                          markup=False, highlight=False)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["operator"]:  # its own options; kopf is only needed here
        from parallelrun.operator.main import main as operator_main

        return operator_main(argv[1:])
    parser = argparse.ArgumentParser(prog="parallelrun", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a BatchInferenceJob on this machine (local mode)")
    run.add_argument("job", help="BatchInferenceJob YAML file")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec field, e.g. --set nodeCount=2 --set input.uri=/data/")
    run.add_argument("--fresh", action="store_true", help="start over instead of resuming an interrupted run")
    validate = commands.add_parser("validate", help="check BatchInferenceJob files, reporting every invalid field")
    validate.add_argument("job", nargs="+")
    commands.add_parser("operator", help="run the Kubernetes operator (see `parallelrun operator --help`)")
    args = parser.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)  # a reason or a path stays on one line
    return {"run": _run, "validate": _validate}[args.command](args, console)


if __name__ == "__main__":
    sys.exit(main())
