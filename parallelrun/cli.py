"""`parallelrun`: run a job here, validate a resource, or start the operator.

The one place that knows both halves: the runner (local mode, validation) and the
operator, imported only for `parallelrun operator` (kopf is an extra).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from rich.console import Console
from rich.logging import RichHandler

from parallelrun.runner.contract import PermanentError
from parallelrun.runner.spec import SpecError, load_spec_file


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


def _run(args, console: Console) -> int:
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


def _validate(args, console: Console) -> int:
    from parallelrun.runner.preflight import missing_files

    status = 0
    for path in args.job:
        if _kind_of(path) == "PipelineSchedule":
            status = max(status, _validate_schedule(path, console))
            continue
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


# -- PipelineSchedule (issue 8) -------------------------------------------------------


def _kind_of(path: str) -> str | None:
    """The `kind` of a YAML file, or None when it cannot be read (the loader then says why)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    return doc.get("kind") if isinstance(doc, dict) else None


def _validate_schedule(path: str, console: Console) -> int:
    from parallelrun.runner.schedules.spec import load_schedule_file

    try:
        spec = load_schedule_file(path)
    except SpecError as e:
        console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
        return 2
    console.print(f"{path}: valid PipelineSchedule {spec.name!r} ({spec.schedule_text})", markup=False,
                  highlight=False)
    return 0


def _schedule(args, console: Console) -> int:
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from parallelrun.runner.schedules.spec import load_schedule_file

    try:
        spec = load_schedule_file(args.file)
    except SpecError as e:
        console.print(f"{args.file}: {e}", style="red", markup=False, highlight=False)
        return 2
    if args.action == "run":
        return _schedule_run(spec, console)
    if spec.schedule is None:
        console.print(f"{spec.name}: no schedule; runs {spec.schedule_text}", markup=False, highlight=False)
        return 0
    zone = ZoneInfo(spec.time_zone)
    for t in spec.schedule.upcoming(datetime.now(timezone.utc), args.n):
        local = t.astimezone(zone)
        print(f"{local:%a %Y-%m-%d %H:%M %Z} ({spec.time_zone})   {t:%Y-%m-%dT%H:%M:%SZ} UTC")
    return 0


def _schedule_run(spec, console: Console) -> int:
    from parallelrun.runner.schedules.local import LocalScheduler

    try:
        from parallelrun.runner.pipelines.local import run_pipeline
    except ImportError:
        console.print("this parallelrun cannot run pipelines locally yet (parallelrun.runner.pipelines.local)",
                      style="red", markup=False)
        return 2

    def run(doc: dict, name: str) -> str:
        return run_pipeline(doc, base_dir=spec.base_dir, name=name, console=console)

    scheduler = LocalScheduler(spec, run, log=lambda text: console.print(text, markup=False, highlight=False))
    console.print(f"{spec.name}: {spec.schedule_text}; state in {scheduler.state_path}; Ctrl-C to stop",
                  markup=False, highlight=False)
    try:
        scheduler.run_forever()
    except KeyboardInterrupt:
        console.print("stopped; run the same command again to go on (no slot is run twice)", markup=False)
        return 130
    return 0


def _trigger(args, console: Console) -> int:
    """Set the run-now annotation through the Kubernetes API, as `kubectl annotate` would."""
    import time

    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from parallelrun.runner.schedules.runs import RUN_NOW

    kind, _, name = args.target.partition("/")
    if kind not in ("psched", "pipelineschedule", "pipelineschedules") or not name:
        console.print(f"{args.target}: name a schedule as psched/NAME", style="red", markup=False)
        return 2
    try:
        config.load_kube_config(config_file=args.kubeconfig, context=args.context)
        contexts, current = config.list_kube_config_contexts(config_file=args.kubeconfig)
        context = next((c for c in contexts if c["name"] == args.context), current) if args.context else current
        namespace = args.namespace or context["context"].get("namespace") or "default"
        value = args.value or str(time.time_ns())
        client.CustomObjectsApi().patch_namespaced_custom_object(
            "parallelrun.dev", "v1alpha1", namespace, "pipelineschedules", name,
            {"metadata": {"annotations": {RUN_NOW: value}}})
    except ApiException as e:
        console.print(f"psched/{name}: the Kubernetes API answered {e.status} {e.reason}", style="red", markup=False)
        return 2
    except config.ConfigException as e:
        console.print(f"no Kubernetes configuration: {e}", style="red", markup=False)
        return 2
    console.print(f"psched/{name} in {namespace}: {RUN_NOW}={value}; the operator starts one run", markup=False,
                  highlight=False)
    return 0


def _add_schedule_commands(commands) -> None:
    schedule = commands.add_parser("schedule", help="a PipelineSchedule on this machine: its next fire times, or "
                                                    "run it in the foreground")
    schedule.add_argument("action", choices=["next", "run"], help="next: print the coming fire times; run: run the "
                          "schedule here (state in the template's workdir)")
    schedule.add_argument("file", help="PipelineSchedule YAML file")
    schedule.add_argument("-n", type=int, default=10, help="how many fire times `next` prints (default 10)")
    trigger = commands.add_parser("trigger", help="run a PipelineSchedule now on the cluster (sets its "
                                                  "parallelrun.dev/run-now annotation)")
    trigger.add_argument("target", metavar="psched/NAME")
    trigger.add_argument("-n", "--namespace", help="default: the kubeconfig context's")
    trigger.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    trigger.add_argument("--context", help="a kubeconfig context other than the current one")
    trigger.add_argument("--value", help="the annotation's value (default: the time in nanoseconds)")


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
    _add_schedule_commands(commands)
    args = parser.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)  # a reason or a path stays on one line
    return {"run": _run, "validate": _validate, "schedule": _schedule, "trigger": _trigger}[args.command](args, console)


if __name__ == "__main__":
    sys.exit(main())
