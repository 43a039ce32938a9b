"""`parallelrun`: run a job here, validate a resource, or start the operator.

The one place that knows both halves: the runner (local mode, validation) and the
operator, imported only for `parallelrun operator` (kopf is an extra). Everything is
imported where a command needs it: `--help` and `--version` start without rich, yaml or
the runner, and a files job without numpy, pandas or pyarrow.
"""

from __future__ import annotations

import argparse
import sys

EXIT_CODES = """exit codes:
  0    the run succeeded (failed items within the thresholds are listed in errors.jsonl)
  1    the run failed: a threshold was exceeded, a part of it crashed, or a pipeline step failed
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


class _Version(argparse.Action):
    """--version, its number looked up only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"parallelrun {_version()}")
        parser.exit()


def _read_resource(path: str) -> dict | None:
    """The YAML file as a mapping, or None when it cannot be read as one (the loaders then say why)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    return doc if isinstance(doc, dict) else None


def _run(args, console) -> int:
    from parallelrun.runner.aml import is_aml_job

    doc = _read_resource(args.job)
    if is_aml_job(doc):
        conversion = _convert_aml(args.job, console)
        if conversion is None:
            return 2
        doc = conversion.resource
    if doc is not None and doc.get("kind") == "PipelineRun":
        return _run_pipeline(args, doc, console)
    return _run_job(args, console)


def _convert_aml(path: str, console):
    """An Azure ML v2 job file converted (what was ignored said once), or None when it cannot be (said why)."""
    from parallelrun.runner.aml import convert_file
    from parallelrun.runner.spec import SpecError

    try:
        conversion = convert_file(path)
    except SpecError as e:
        console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
        return None
    for line in conversion.ignored:
        console.print(f"{path}: ignored {line}", style="yellow", markup=False, highlight=False)
    return conversion


def _convert(args, console) -> int:
    """`parallelrun convert aml-job.yml`: the resource an Azure ML v2 job becomes, as YAML on stdout."""
    import yaml

    conversion = _convert_aml(args.file, console)
    if conversion is None:
        return 2
    print(f"# Converted from {args.file} by `parallelrun convert`; relative paths are relative to its folder.")
    print(yaml.safe_dump(conversion.resource, sort_keys=False, width=120), end="")
    return 0


def _run_pipeline(args, doc: dict, console) -> int:
    """`parallelrun run pipeline.yaml`: the run's DAG here; exit 0 succeeded, 1 failed, 2 invalid, 130 stopped."""
    import os
    import signal

    from parallelrun.runner.contract import PermanentError
    from parallelrun.runner.pipelines.local import run_pipeline
    from parallelrun.runner.processes import raise_terminated
    from parallelrun.runner.spec import SpecError
    from parallelrun.runner.storage import storage_error

    parameters = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        name = key.removeprefix("parameters.")
        if not sep or not key.startswith("parameters.") or not name:
            console.print(f"--set {item!r}: a pipeline takes parameter values, e.g. --set parameters.maxIter=500",
                          style="red", markup=False, highlight=False)
            return 2
        parameters[name] = value
    signal.signal(signal.SIGTERM, raise_terminated)  # stops the running steps as Ctrl-C does, exit 143
    try:
        phase = run_pipeline(doc, base_dir=os.path.dirname(os.path.abspath(args.job)), parameters=parameters,
                             console=console, fresh=args.fresh)
    except SpecError as e:
        console.print(f"{args.job}: {e}", style="red", markup=False, highlight=False)
        return e.exit_code
    except PermanentError as e:  # the run is running already
        console.print(f"failed: {e}", style="red", markup=False, highlight=False)
        return e.exit_code
    except KeyboardInterrupt as e:
        console.print("interrupted: the running steps were stopped; run the same command again to go on "
                      "(finished steps are reused)", style="red", markup=False)
        return getattr(e, "exit_code", 130)
    except Exception as e:  # a storage fault (the workdir, a component file), in one line
        error = storage_error(e)
        if error is None:
            raise
        console.print(str(error), style="red", markup=False, highlight=False)
        return error.exit_code
    return 0 if phase == "Succeeded" else 1


def _run_job(args, console) -> int:
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
        run_local(args.job, args.set, fresh=args.fresh, console=console, retry_failed=args.retry_failed)
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
    from parallelrun.runner.aml import is_aml_job

    status = 0
    for path in args.job:
        doc = _read_resource(path)
        kind = doc.get("kind") if doc is not None else None
        if kind == "PipelineRun":
            status = max(status, _validate_pipeline(path, doc, args.no_check, console))
        elif kind == "Component":
            status = max(status, _validate_component(path, console))
        elif kind == "PipelineSchedule":
            status = max(status, _validate_schedule(path, console))
        elif is_aml_job(doc):
            status = max(status, _validate_aml(path, args, console))
        else:
            status = max(status, _validate_job(path, args, console))
    return status


def _validate_pipeline(path: str, doc: dict, no_check: bool, console) -> int:
    """A PipelineRun with its component files (not read with --no-check): every problem at once."""
    import os

    from parallelrun.runner.pipelines.sources import ComponentFiles
    from parallelrun.runner.pipelines.spec import load_pipeline
    from parallelrun.runner.spec import SpecError

    try:
        spec = load_pipeline(doc, base_dir=os.path.dirname(os.path.abspath(path)),
                             components=None if no_check else ComponentFiles())
    except SpecError as e:
        console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
        return 2
    checked = "" if no_check else ", its components are valid"
    console.print(f"{path}: valid PipelineRun {spec.name!r} ({len(spec.steps)} steps, "
                  f"{len(spec.finally_steps)} finally{checked})", markup=False, highlight=False)
    return 0


def _validate_component(path: str, console) -> int:
    import os

    from parallelrun.runner.pipelines.component import load_component_text
    from parallelrun.runner.spec import SpecError

    try:
        with open(path, "rb") as f:
            component = load_component_text(f.read(), base_dir=os.path.dirname(os.path.abspath(path)))
    except SpecError as e:
        console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
        return 2
    console.print(f"{path}: valid Component {component.name!r} version {component.version} ({component.type})",
                  markup=False, highlight=False)
    return 0


def _validate_job(path: str, args, console) -> int:
    from parallelrun.runner.preflight import missing_files
    from parallelrun.runner.spec import SpecError, load_spec_file

    try:
        spec = load_spec_file(path)
        problems = [] if args.no_check else missing_files(spec)
        if problems:
            raise SpecError(problems)
    except SpecError as e:
        console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
        return 2
    checked = "" if args.no_check else ", its files are there"
    console.print(f"{path}: valid BatchInferenceJob {spec.name!r} ({spec.input.type} input{checked})",
                  markup=False, highlight=False)
    return 0


def _validate_aml(path: str, args, console) -> int:
    """An Azure ML v2 job file: converted, then checked as the resource it becomes."""
    import os

    from parallelrun.runner.aml import load_job_file
    from parallelrun.runner.pipelines.sources import ComponentFiles
    from parallelrun.runner.pipelines.spec import load_pipeline
    from parallelrun.runner.preflight import missing_files
    from parallelrun.runner.spec import SpecError

    conversion = _convert_aml(path, console)
    if conversion is None:
        return 2
    try:
        if conversion.resource["kind"] == "PipelineRun":
            spec = load_pipeline(conversion.resource, base_dir=os.path.dirname(os.path.abspath(path)),
                                 components=None if args.no_check else ComponentFiles())
            what = f"PipelineRun {spec.name!r} ({len(spec.steps)} steps)"
        else:
            spec = load_job_file(path)
            problems = [] if args.no_check else missing_files(spec)
            if problems:
                raise SpecError(problems)
            what = f"BatchInferenceJob {spec.name!r} ({spec.input.type} input)"
    except SpecError as e:
        console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
        return 2
    aml_type = "pipeline" if conversion.resource["kind"] == "PipelineRun" else "parallel"
    console.print(f"{path}: valid Azure ML {aml_type} job, runs as {what}", markup=False, highlight=False)
    return 0


# -- PipelineSchedule (issue 8) -------------------------------------------------------


def _validate_schedule(path: str, console) -> int:
    """A PipelineSchedule, its template checked as a PipelineRun with its component files."""
    from parallelrun.runner.pipelines.sources import ComponentFiles
    from parallelrun.runner.schedules.spec import load_schedule_file
    from parallelrun.runner.spec import SpecError

    try:
        spec = load_schedule_file(path, components=ComponentFiles())
    except SpecError as e:
        console.print(f"{path}: {e}", style="red", markup=False, highlight=False)
        return 2
    console.print(f"{path}: valid PipelineSchedule {spec.name!r} ({spec.schedule_text})", markup=False,
                  highlight=False)
    return 0


def _schedule(args, console) -> int:
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from parallelrun.runner.schedules.spec import load_schedule_file
    from parallelrun.runner.spec import SpecError

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


def _schedule_run(spec, console) -> int:
    import signal

    from parallelrun.runner.pipelines.local import run_pipeline
    from parallelrun.runner.processes import raise_terminated
    from parallelrun.runner.schedules.local import LocalScheduler

    def run(doc: dict, name: str) -> str:
        return run_pipeline(doc, base_dir=spec.base_dir, name=name, console=console)

    scheduler = LocalScheduler(spec, run, log=lambda text: console.print(text, markup=False, highlight=False))
    signal.signal(signal.SIGTERM, raise_terminated)  # stops it as Ctrl-C does, exit 143
    try:
        console.print(f"{spec.name}: {spec.schedule_text}; state in {scheduler.state_path}; Ctrl-C to stop",
                      markup=False, highlight=False)
        scheduler.run_forever()
    except KeyboardInterrupt as e:
        console.print("stopped; run the same command again to go on (no slot is run twice)", markup=False)
        return getattr(e, "exit_code", 130)
    return 0


def _trigger(args, console) -> int:
    """Set the run-now annotation through the Kubernetes API, as `kubectl annotate` would."""
    import time

    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from parallelrun.runner.api import ANNOTATION_RUN_NOW as RUN_NOW
    from parallelrun.runner.api import GROUP, PIPELINE_SCHEDULE, VERSION

    kind, _, name = args.target.partition("/")
    if kind not in PIPELINE_SCHEDULE.names or not name:
        console.print(f"{args.target}: name a schedule as psched/NAME", style="red", markup=False)
        return 2
    try:
        config.load_kube_config(config_file=args.kubeconfig, context=args.context)
        contexts, current = config.list_kube_config_contexts(config_file=args.kubeconfig)
        context = next((c for c in contexts if c["name"] == args.context), current) if args.context else current
        namespace = args.namespace or context["context"].get("namespace") or "default"
        value = args.value or str(time.time_ns())
        client.CustomObjectsApi().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PIPELINE_SCHEDULE.plural, name,
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
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a BatchInferenceJob or a PipelineRun on this machine (local mode)",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES)
    run.add_argument("job", help="BatchInferenceJob or PipelineRun YAML file, or an Azure ML v2 parallel or pipeline job")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec field, e.g. --set nodeCount=2 --set input.uri=data/; a relative "
                          "path is relative to the YAML file's folder, as in the file. A PipelineRun takes "
                          "parameter values: --set parameters.maxIter=500")
    run.add_argument("--fresh", action="store_true", help="start over instead of resuming an interrupted run "
                                                          "(a pipeline: reuse no earlier step)")
    run.add_argument("--retry-failed", action="store_true",
                     help="rerun only the failed mini-batches of the job's finished run, with the script and "
                          "model as they are now, into a new version of the same ordered output (the old one "
                          "kept as <fileName>.previous); errors.jsonl then lists only what still fails")
    validate = commands.add_parser("validate", help="check BatchInferenceJob, PipelineRun, PipelineSchedule and Component files, "
                                                    "reporting every invalid field (and, for a job, every input, "
                                                    "code, model or side input that is not there)")
    validate.add_argument("job", nargs="+")
    validate.add_argument("--no-check", action="store_true",
                          help="check the spec alone, without looking for its files or reading a pipeline's "
                               "components (no storage access)")
    convert = commands.add_parser("convert", help="print the BatchInferenceJob (or PipelineRun) an Azure ML v2 "
                                                  "parallel (or pipeline) job YAML becomes")
    convert.add_argument("file", help="Azure ML v2 job YAML (type: parallel or type: pipeline)")
    commands.add_parser("operator", help="run the Kubernetes operator (see `parallelrun operator --help`)")
    _add_schedule_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "run":  # the workers' zygote imports our modules while this process reads the job
        from parallelrun.runner.zygote import start_early

        start_early()
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # a reason or a path stays on one line
    return {"run": _run, "validate": _validate, "convert": _convert, "schedule": _schedule,
            "trigger": _trigger}[args.command](args, console)


def command() -> None:
    """The `parallelrun` command: main(), then the process ends without the interpreter's
    teardown (freeing every module and object took 0.03-0.05 s, a tenth of a small job),
    its output and logs flushed. Where a thread of the command still runs, as usual."""
    code = main()
    import logging
    import os
    import threading

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if all(t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    command()
