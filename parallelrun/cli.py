"""`parallelrun`: the command line of local mode, validation, schedules and the operator.

Everything is imported where a command needs it: `--help` and `--version` start without
rich, yaml or the runner, and a files job without numpy, pandas or pyarrow. An extra that
is not installed (kopf for `operator`, kubernetes for `trigger`, adlfs for az://) is a
one-line fix naming it, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from parallelrun.runcommands import COMMANDS as RUN_COMMANDS
from parallelrun.runcommands import add_commands as add_run_commands
from parallelrun.runcommands import run_command

if TYPE_CHECKING:
    from parallelrun.runner.records import RunResult

DESCRIPTION = """\
Batch inference: run a scoring script's init() and run(mini_batch) over a dataset in
parallel, on this machine or on Kubernetes, as Azure ML's ParallelRunStep does; with
pipelines of steps around it and schedules that start them."""

EXAMPLES = """examples:
  parallelrun run examples/iris/job.yaml                  score a folder of data on this machine
  parallelrun run pipeline.yaml --set parameters.maxIter=500
  parallelrun validate examples/ --no-check               check every resource in a folder
  parallelrun schedule next nightly.yaml -n 5 -o json     the coming fire times
  parallelrun status out/iris/                            a run's phase, counts and ETA
  parallelrun report out/iris/ -o iris.html               a run's report as one HTML page
  parallelrun operator --help                             the Kubernetes operator's options
"""

EXIT_CODES = """exit codes:
  0    the run succeeded (failed items within the thresholds are listed in errors.jsonl)
  1    the run failed: a threshold was exceeded, a part of it crashed, or a pipeline step failed
  2    bad configuration: invalid spec, missing input or code, the scoring script cannot load,
       storage refused or unreachable, input changed since an interrupted run, run already running
  130  interrupted (Ctrl-C), 143 stopped by SIGTERM: run the same command again to resume
"""


class _Usage(Exception):
    """A command line that cannot be carried out: its one-line reason, exit 2."""


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


def _print_json(value) -> None:
    import json

    print(json.dumps(value, indent=2, default=str))


def _existing(path: str, what: str) -> str:
    """`path`, or a one-line usage error when there is no such file."""
    import os

    if not os.path.isfile(path):
        raise _Usage(f"{path}: no such file; give the path of {what}")
    return path


def _run(args, console) -> int:
    from parallelrun.runner.aml import is_aml_job

    doc = _read_resource(_existing(args.job, "a BatchInferenceJob or PipelineRun YAML file"))
    if is_aml_job(doc):
        conversion = _convert_aml(args.job, console)
        if conversion is None:
            return 2
        doc = conversion.resource
    from parallelrun.runner.records import RunResult

    kind = (doc.get("kind") if doc is not None else None) or "BatchInferenceJob"
    if doc is not None and kind == "PipelineRun":
        result = _run_pipeline(args, doc, console)
    elif kind in _NOT_RUN:
        reason = _NOT_RUN[kind].format(file=args.job)
        console.print(f"{args.job}: {reason}", style="red", markup=False, highlight=False)
        result = RunResult(args.job, kind, 2, "Invalid", errors=[reason])
    else:
        result = _run_job(args, console, kind)
    if args.output == "json":
        _print_json(result.to_dict())
    return result.exit_code


_NOT_RUN = {  # kinds `parallelrun run` refuses, and what runs them
    "PipelineSchedule": "a PipelineSchedule runs with `parallelrun schedule run {file}` (its fire times: "
                        "`parallelrun schedule next {file}`)",
    "Component": "a Component runs as a step of a PipelineRun (component: {{uri: {file}}}); check it with "
                 "`parallelrun validate {file}`",
}


def _pipeline_parameters(items: list[str]) -> dict[str, str]:
    """`--set parameters.NAME=VALUE` items as parameter values; raises PipelineSpecError for any other."""
    from parallelrun.runner.pipelines.spec import PipelineSpecError

    parameters = {}
    for item in items:
        key, sep, value = item.partition("=")
        name = key.removeprefix("parameters.")
        if not sep or not key.startswith("parameters.") or not name:
            raise PipelineSpecError([f"--set {item!r}: a pipeline takes parameter values, e.g. "
                                     "--set parameters.maxIter=500"])
        parameters[name] = value
    return parameters


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


def _run_pipeline(args, doc: dict, console) -> RunResult:
    """`parallelrun run pipeline.yaml`: the run's DAG here; exit 0 succeeded, 1 failed, 2 invalid, 130 stopped."""
    import os
    import signal
    from functools import partial

    from parallelrun.runner.contract import PermanentError
    from parallelrun.runner.pipelines.local import run_pipeline
    from parallelrun.runner.processes import raise_terminated
    from parallelrun.runner.records import RunResult
    from parallelrun.runner.spec import SpecError
    from parallelrun.runner.storage import storage_error

    result = partial(RunResult, args.job, "PipelineRun")
    signal.signal(signal.SIGTERM, raise_terminated)  # stops the running steps as Ctrl-C does, exit 143
    try:
        phase = run_pipeline(doc, base_dir=os.path.dirname(os.path.abspath(args.job)),
                             parameters=_pipeline_parameters(args.set), console=console, fresh=args.fresh)
    except SpecError as e:
        console.print(f"{args.job}: {e}", style="red", markup=False, highlight=False)
        return result(e.exit_code, "Invalid", errors=e.errors)
    except PermanentError as e:  # the run is running already
        console.print(f"failed: {e}", style="red", markup=False, highlight=False)
        return result(e.exit_code, "Failed", error=str(e))
    except KeyboardInterrupt as e:
        console.print("interrupted: the running steps were stopped; run the same command again to go on "
                      "(finished steps are reused)", style="red", markup=False)
        return result(getattr(e, "exit_code", 130), "Interrupted")
    except Exception as e:  # a storage fault (the workdir, a component file), in one line
        error = storage_error(e)
        if error is None:
            raise
        console.print(str(error), style="red", markup=False, highlight=False)
        return result(error.exit_code, "Failed", error=str(error))
    return result(0 if phase == "Succeeded" else 1, phase)


def _run_job(args, console, kind: str) -> RunResult:
    import logging
    import signal
    from functools import partial

    from parallelrun.runner.contract import PermanentError
    from parallelrun.runner.local import LocalRunError, run_local
    from parallelrun.runner.lock import RunLocked
    from parallelrun.runner.planning import PlanError
    from parallelrun.runner.processes import raise_terminated
    from parallelrun.runner.records import RunResult, RunSummary
    from parallelrun.runner.spec import SpecError

    result = partial(RunResult, args.job, kind)
    # Warnings (retried attempts) print above the progress bar on a terminal, as plain lines off it;
    # worker output goes to log files.
    if console.is_terminal:
        from rich.logging import RichHandler

        logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)])
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, raise_terminated)  # stops the run as Ctrl-C does (workers stopped), exit 143
    try:
        summary = run_local(args.job, args.set, fresh=args.fresh, console=console, retry_failed=args.retry_failed)
    except LocalRunError as e:  # the run did not succeed: its one-line reason
        console.print(f"failed: {e}", style="red", markup=False, highlight=False)
        status = "Interrupted" if e.exit_code in (130, 143) else "Failed"
        return result(e.exit_code, status, RunSummary.from_dict(e.summary) if e.summary else None, error=str(e))
    except PermanentError as e:  # an invalid spec, input that cannot be planned, the run already running...
        headline = "cannot plan: " if isinstance(e, PlanError) else "failed: " if isinstance(e, RunLocked) else ""
        console.print(f"{headline}{e}", style="red", markup=False, highlight=False)
        if isinstance(e, SpecError):
            return result(e.exit_code, "Invalid", errors=e.errors)
        return result(e.exit_code, "Failed", error=f"{headline}{e}")
    except KeyboardInterrupt as e:  # while planning or merging: nothing is half-done that a rerun cannot finish
        console.print("interrupted; run the same command again to resume", style="red", markup=False)
        return result(getattr(e, "exit_code", 130), "Interrupted")
    except Exception as e:  # a storage fault raised as it came (OSError, azure-core)
        from parallelrun.runner.storage import storage_error

        error = storage_error(e)
        if error is None:
            raise
        console.print(str(error), style="red", markup=False, highlight=False)
        return result(error.exit_code, "Failed", error=str(error))
    finished = RunSummary.from_dict(summary)
    return result(0, finished.status, finished)


def _validate(args, console) -> int:
    """Each file (each YAML file in a folder given) checked: valid ones on stdout, problems on stderr."""
    results = [_check(path, args) for path in _yaml_files(args.job)]
    valid = all(r["valid"] for r in results)
    if args.output == "json":
        _print_json({"valid": valid, "resources": results})
        return 0 if valid else 2
    for r in results:
        if r["valid"]:
            print(f"{r['file']}: valid {r['kind']} {r['name']!r} ({r['detail']})")
        else:
            console.print(f"{r['file']}: invalid {r['kind']}:\n  " + "\n  ".join(r["errors"]), style="red",
                          markup=False, highlight=False)
    return 0 if valid else 2


def _yaml_files(paths: list[str]) -> list[str]:
    """The files given, a folder standing for the .yaml and .yml files under it, sorted
    (as `kubectl apply -f DIR -R`)."""
    import os

    files = []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)
            continue
        found = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names
                       if name.endswith((".yaml", ".yml")))
        if not found:
            raise _Usage(f"{path}: no .yaml or .yml file in this folder; give a resource file or a folder of them")
        files += found
    return files


def _check(path: str, args) -> dict:
    """One file validated: file, kind, name, valid, errors and (valid) a one-line detail."""
    from parallelrun.runner.aml import is_aml_job
    from parallelrun.runner.spec import SpecError

    doc = _read_resource(path)
    kind = "BatchInferenceJob"
    if is_aml_job(doc):
        kind = "AzureMLJob"
    elif doc is not None and doc.get("kind") in _CHECKS:
        kind = doc["kind"]
    try:
        name, detail = _CHECKS[kind](path, doc or {}, args)  # {}: a BatchInferenceJob's check reads the file itself
    except SpecError as e:
        return {"file": path, "kind": kind, "name": None, "valid": False, "errors": e.errors}
    return {"file": path, "kind": kind, "name": name, "valid": True, "errors": [], "detail": detail}


def _check_pipeline(path: str, doc: dict, args) -> tuple[str, str]:
    """A PipelineRun with its component files (not read with --no-check)."""
    import os

    from parallelrun.runner.pipelines.sources import ComponentFiles
    from parallelrun.runner.pipelines.spec import load_pipeline

    spec = load_pipeline(doc, base_dir=os.path.dirname(os.path.abspath(path)),
                         parameters=_pipeline_parameters(args.set),
                         components=None if args.no_check else ComponentFiles())
    checked = "" if args.no_check else ", its components are valid"
    return spec.name, f"{len(spec.steps)} steps, {len(spec.finally_steps)} finally{checked}"


def _check_component(path: str, doc: dict, args) -> tuple[str, str]:
    import os

    from parallelrun.runner.pipelines.component import load_component_text

    with open(path, "rb") as f:
        component = load_component_text(f.read(), base_dir=os.path.dirname(os.path.abspath(path)))
    return component.name, f"version {component.version}, {component.type}"


def _check_aml(path: str, doc: dict, args) -> tuple[str, str]:
    """An Azure ML v2 job file: converted (what is ignored said once), then checked as the resource it becomes."""
    import os

    from parallelrun.runner.aml import convert_file, load_job_file
    from parallelrun.runner.pipelines.sources import ComponentFiles
    from parallelrun.runner.pipelines.spec import load_pipeline
    from parallelrun.runner.preflight import missing_files
    from parallelrun.runner.spec import SpecError

    conversion = convert_file(path)
    for line in conversion.ignored:
        print(f"{path}: ignored {line}", file=sys.stderr)
    if conversion.resource["kind"] == "PipelineRun":
        spec = load_pipeline(conversion.resource, base_dir=os.path.dirname(os.path.abspath(path)),
                             components=None if args.no_check else ComponentFiles())
        return spec.name, f"an Azure ML pipeline job, runs as a PipelineRun of {len(spec.steps)} steps"
    job = load_job_file(path)
    problems = [] if args.no_check else missing_files(job)
    if problems:
        raise SpecError(problems)
    return job.name, f"an Azure ML parallel job, runs as a BatchInferenceJob of {job.input.type} input"


def _check_schedule(path: str, doc: dict, args) -> tuple[str, str]:
    """A PipelineSchedule, its template checked as a PipelineRun with its component files."""
    from parallelrun.runner.pipelines.sources import ComponentFiles
    from parallelrun.runner.schedules.spec import load_schedule_file

    spec = load_schedule_file(path, components=None if args.no_check else ComponentFiles())
    return spec.name, spec.schedule_text


def _check_job(path: str, doc: dict, args) -> tuple[str, str]:
    """A BatchInferenceJob, and (unless --no-check) its files: there, and the entry script compiles."""
    from parallelrun.runner.preflight import missing_files, script_problems
    from parallelrun.runner.spec import SpecError, load_spec_file

    spec = load_spec_file(path, args.set)
    problems = [] if args.no_check else missing_files(spec) or script_problems(spec)
    if problems:
        raise SpecError(problems)
    checked = "" if args.no_check else ", its files are there"
    return spec.name, f"{spec.input.type} input{checked}"


_CHECKS = {"BatchInferenceJob": _check_job, "PipelineRun": _check_pipeline, "PipelineSchedule": _check_schedule,
           "Component": _check_component, "AzureMLJob": _check_aml}


def _schedule(args, console) -> int:
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from parallelrun.runner.schedules.spec import load_schedule_file
    from parallelrun.runner.spec import SpecError

    try:
        spec = load_schedule_file(_existing(args.file, "a PipelineSchedule YAML file"))
    except SpecError as e:
        console.print(f"{args.file}: {e}", style="red", markup=False, highlight=False)
        return 2
    if args.action == "run":
        return _schedule_run(spec, console)
    times = spec.schedule.upcoming(datetime.now(timezone.utc), args.n) if spec.schedule is not None else []
    zone = ZoneInfo(spec.time_zone)
    if args.output == "json":
        _print_json({"name": spec.name, "schedule": spec.schedule_text, "timeZone": spec.time_zone,
                     "times": [{"local": t.astimezone(zone).isoformat(), "utc": f"{t:%Y-%m-%dT%H:%M:%SZ}"}
                               for t in times]})
        return 0
    if spec.schedule is None:
        print(f"{spec.name}: no schedule; runs {spec.schedule_text}")
    for t in times:
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
    print(f"psched/{name} in {namespace}: {RUN_NOW}={value}; the operator starts one run")
    return 0


def _count(text: str) -> int:
    """-n: a count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count; use a whole number of at least 1, e.g. -n 10")
    return value


def _add_output_option(parser) -> None:
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help="json: the result as one JSON document on stdout (progress and problems stay on stderr)")


def _add_schedule_commands(commands) -> None:
    schedule = commands.add_parser(
        "schedule", help="a PipelineSchedule on this machine: its next fire times, or run it in the foreground",
        description="A PipelineSchedule on this machine: print its coming fire times, or run it in\n"
                    "the foreground as the operator would (state in the template's workdir).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  parallelrun schedule next examples/schedules/nightly-scoring.yaml -n 5\n"
               "  parallelrun schedule run examples/schedules/nightly-scoring.yaml\n")
    schedule.add_argument("action", choices=["next", "run"], help="next: print the coming fire times; run: run the "
                          "schedule here (state in the template's workdir)")
    schedule.add_argument("file", help="PipelineSchedule YAML file")
    schedule.add_argument("-n", type=_count, default=10, help="how many fire times `next` prints (default 10)")
    _add_output_option(schedule)
    trigger = commands.add_parser(
        "trigger", help="run a PipelineSchedule now on the cluster (sets its parallelrun.dev/run-now annotation)",
        description="Run a PipelineSchedule now on the cluster: set its parallelrun.dev/run-now\n"
                    "annotation, as `kubectl annotate` would; the operator starts one run. Needs the\n"
                    "operator extra.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  parallelrun trigger psched/iris-nightly -n team-a\n")
    trigger.add_argument("target", metavar="psched/NAME")
    trigger.add_argument("-n", "--namespace", help="default: the kubeconfig context's")
    trigger.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    trigger.add_argument("--context", help="a kubeconfig context other than the current one")
    trigger.add_argument("--value", help="the annotation's value (default: the time in nanoseconds)")


def build_parser() -> argparse.ArgumentParser:
    """The command line, but `operator`'s own options (parallelrun.operator.main.parser)."""
    parser = argparse.ArgumentParser(prog="parallelrun", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a BatchInferenceJob or a PipelineRun on this machine (local mode)",
                              description="Run a BatchInferenceJob or a PipelineRun on this machine: plan, score\n"
                                          "over worker processes, merge; an interrupted run resumes.",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n  parallelrun run examples/iris/job.yaml --set nodeCount=2\n"
                                     "  parallelrun run examples/pipelines/iris/pipeline.yaml "
                                     "--set parameters.scoringDate=2025-01-31\n\n" + EXIT_CODES)
    run.add_argument("job", help="BatchInferenceJob or PipelineRun YAML file")
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
    _add_output_option(run)
    validate = commands.add_parser(
        "validate", help="check BatchInferenceJob, PipelineRun, PipelineSchedule and Component files",
        description="Check resource files, reporting every invalid field with its fix and, for a job,\n"
                    "every input, code, model or side input that is not there and an entry script that\n"
                    "does not compile. Valid files are listed on stdout, problems on stderr; exit 2 if\n"
                    "any is invalid.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  parallelrun validate examples/iris/job.yaml --set input.uri=data/\n"
               "  parallelrun validate examples/ --no-check\n")
    validate.add_argument("job", nargs="+", metavar="FILE", help="a resource YAML file, or a folder: every .yaml "
                                                                  "and .yml file under it")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="as for run: a spec field of a job, a parameter of a pipeline (--set parameters.X=V)")
    validate.add_argument("--no-check", action="store_true",
                          help="check the spec alone, without looking for its files or reading a pipeline's "
                               "components (no storage access)")
    _add_output_option(validate)
    convert = commands.add_parser("convert", help="print the BatchInferenceJob (or PipelineRun) an Azure ML v2 "
                                                  "parallel (or pipeline) job YAML becomes")
    convert.add_argument("file", help="Azure ML v2 job YAML (type: parallel or type: pipeline)")
    commands.add_parser("operator", help="run the Kubernetes operator (see `parallelrun operator --help`)",
                        add_help=False)
    _add_schedule_commands(commands)
    add_run_commands(commands, _add_output_option)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except _Usage as e:
        print(f"parallelrun: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an extra that is not installed: the one line that installs it
        from parallelrun.runner.extras import install_hint

        hint = install_hint(e, needed_for=f"`parallelrun {argv[0]}`" if argv else "")
        if hint is None:
            raise
        print(f"parallelrun: {hint}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    if argv[:1] == ["operator"]:  # its own options; kopf is only needed to run it
        from parallelrun.operator.main import main as operator_main

        return operator_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "run":  # the workers' zygote imports our modules while this process reads the job
        from parallelrun.runner.zygote import start_early

        start_early()
    from rich.console import Console

    # A reason or a path stays on one line; off a terminal a table is as wide as its content, not 80 columns.
    console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else _UNWRAPPED)
    if args.command in RUN_COMMANDS:
        return run_command(args, console)
    return {"run": _run, "validate": _validate, "convert": _convert, "schedule": _schedule,
            "trigger": _trigger}[args.command](args, console)


_UNWRAPPED = 100_000


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
