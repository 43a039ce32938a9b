"""`parallelrun`: run a job here, validate a resource, or start the operator.

The one place that knows both halves: the runner (local mode, validation) and the
operator, imported only for `parallelrun operator` (kopf is an extra). Everything is
imported where a command needs it: a worker process, which imports this module again
(multiprocessing's spawn), and `--help` start without rich, yaml or the runner.
"""

from __future__ import annotations

import argparse
import sys


EXIT_CODES = """exit codes:
  0    the run succeeded (failed items within the thresholds are listed in errors.jsonl)
  1    the run failed: a threshold was exceeded, or a part of it crashed
  2    bad configuration: invalid spec, missing input or code, the scoring script cannot load,
       storage refused or unreachable, input changed since an interrupted run, run already running
  130  interrupted (Ctrl-C), 143 stopped by SIGTERM: run the same command again to resume
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("parallelrun")
    except PackageNotFoundError:
        return "unknown"


def _run(args, console) -> int:
    import logging
    import signal

    from rich.logging import RichHandler

    from parallelrun.runner.contract import PermanentError
    from parallelrun.runner.local import LocalRunError, run_local
    from parallelrun.runner.lock import RunLocked
    from parallelrun.runner.plan import PlanError
    from parallelrun.runner.processes import raise_terminated

    # Warnings (retried attempts) print above the progress bar; worker output goes to log files.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)])
    signal.signal(signal.SIGTERM, raise_terminated)  # stops the run as Ctrl-C does (workers stopped), exit 143
    try:
        run_local(args.job, args.set, fresh=args.fresh, console=console)
    except LocalRunError as e:  # the run did not succeed: its one-line reason
        console.print(f"failed: {e}", style="red", markup=False, highlight=False)
        return e.exit_code
    except PermanentError as e:  # an invalid spec, input that cannot be planned, the run already running...
        headline = "cannot plan: " if isinstance(e, PlanError) else "failed: " if isinstance(e, RunLocked) else ""
        console.print(f"{headline}{e}", style="red", markup=False, highlight=False)
        return e.exit_code
    except KeyboardInterrupt as e:  # while planning or merging: nothing is half-done that a rerun cannot finish
        console.print("interrupted; run the same command again to resume", style="red", markup=False)
        return getattr(e, "exit_code", 130)
    except Exception as e:  # a storage fault raised as it came (OSError, azure-core)
        from parallelrun.runner.storage import storage_error

        error = storage_error(e)
        if error is None:
            raise
        console.print(str(error), style="red", markup=False, highlight=False)
        return error.exit_code
    return 0


def _validate(args, console) -> int:
    from parallelrun.runner.preflight import missing_files
    from parallelrun.runner.spec import SpecError, load_spec_file

    status = 0
    for path in args.job:
        try:
            spec = load_spec_file(path)
            problems = [] if args.no_check else missing_files(spec)
            if problems:
                raise SpecError(problems)
        except SpecError as e:
            console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
            status = 2
        else:
            checked = "" if args.no_check else ", its files are there"
            console.print(f"{path}: valid BatchInferenceJob {spec.name!r} ({spec.input.type} input{checked})",
                          markup=False, highlight=False)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["operator"]:  # its own options; kopf is only needed here
        from parallelrun.operator.main import main as operator_main

        return operator_main(argv[1:])
    parser = argparse.ArgumentParser(prog="parallelrun", description=__doc__)
    parser.add_argument("--version", action="version", version=f"parallelrun {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a BatchInferenceJob on this machine (local mode)",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES)
    run.add_argument("job", help="BatchInferenceJob YAML file")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec field, e.g. --set nodeCount=2 --set input.uri=data/; a relative "
                          "path is relative to the YAML file's folder, as in the file")
    run.add_argument("--fresh", action="store_true", help="start over instead of resuming an interrupted run")
    validate = commands.add_parser("validate", help="check BatchInferenceJob files, reporting every invalid field "
                                                    "and every input, code, model or side input that is not there")
    validate.add_argument("job", nargs="+")
    validate.add_argument("--no-check", action="store_true",
                          help="check the spec alone, without looking for its files (no storage access)")
    commands.add_parser("operator", help="run the Kubernetes operator (see `parallelrun operator --help`)")
    args = parser.parse_args(argv)
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # a reason or a path stays on one line
    return {"run": _run, "validate": _validate}[args.command](args, console)


if __name__ == "__main__":
    sys.exit(main())
