"""`parallelrun report`, `status`, `list`, `logs` and `clean`: what a user asks of runs, during
and between them, locally or on storage. The runner is imported where a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys

WHERE = ("a job's output URI (spec.output.uri: its latest run) or a run folder "
         "<output>/_parallelrun/<run-id>")


def _command(commands, name: str, summary: str, description: str, examples: list[str]):
    return commands.add_parser(name, help=summary, description=description,
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog="examples:\n" + "".join(f"  parallelrun {e}\n" for e in examples))


def add_commands(commands, add_output_option) -> None:
    report = _command(
        commands, "report", "write a run's report: one self-contained HTML page",
        "Write one self-contained HTML page of a run (no network needed to open it): a timeline\n"
        "of workers, throughput, failures by error, the slowest mini-batches, idle time per\n"
        "worker, resource use per pod, the spec and the summary. A run in progress or one\n"
        "from an older version gives what there is, and says what is missing.",
        ["report out/iris/ -o iris.html", "report az://out/iris/_parallelrun/iris-0123456789"])
    report.add_argument("run", metavar="OUTPUT_URI_OR_RUN", help=WHERE)
    report.add_argument("-o", "--output", metavar="FILE", help="the page to write (default: <run-id>.html here)")
    status = _command(commands, "status", "a run's phase, counts and ETA",
                      "A run's phase, its counts so far and, while it runs, its ETA: on this machine or on storage.",
                      ["status out/iris/", "status az://out/iris/ -o json"])
    status.add_argument("run", metavar="OUTPUT_URI_OR_RUN", help=WHERE)
    add_output_option(status)
    listing = _command(commands, "list", "the runs under an output: state, size and age",
                       "The runs under a job's output, the most recent first: state, mini-batches, size and age.",
                       ["list out/iris/", "list az://out/iris/ -o json"])
    listing.add_argument("output_uri", metavar="OUTPUT_URI", nargs="?", default=".",
                         help="a job's output URI (default: the current folder)")
    add_output_option(listing)
    logs = _command(commands, "logs", "the worker logs of a local run",
                    "The worker logs of a run made on this machine, each line after its worker's name;\n"
                    "--follow prints new lines until the run ends.",
                    ["logs out/iris/ --worker 0", "logs out/iris/ --follow"])
    logs.add_argument("run", metavar="RUN", help=WHERE)
    logs.add_argument("--worker", type=int, metavar="N", help="only worker N of each shard")
    logs.add_argument("-f", "--follow", action="store_true", help="print new lines as they come, until the run ends")
    add_output_option(logs)
    clean = _command(
        commands, "clean", "remove old run folders under an output (never a running run, never the output file)",
        "Remove run folders under <output>/_parallelrun/: beyond the N most recent (--keep) and/or\n"
        "started longer ago than D (--older-than). A running run and the output file are never\n"
        "removed.", ["clean out/iris/ --keep 3", "clean az://out/iris/ --older-than 7d --dry-run"])
    clean.add_argument("output_uri", metavar="OUTPUT_URI")
    clean.add_argument("--keep", type=_keep, metavar="N", help="keep the N most recently started runs")
    clean.add_argument("--older-than", metavar="D", help="remove only runs started longer ago than D: 90s, 30m, "
                                                         "12h, 7d, 2w")
    clean.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    add_output_option(clean)


COMMANDS = ("report", "status", "list", "logs", "clean")


def _keep(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count; use a whole number of at least 0, e.g. --keep 3")
    return value


def run_command(args, console) -> int:
    from parallelrun.runner.runfolders import RunNotFound
    from parallelrun.runner.storage import storage_error

    try:
        return {"report": _report, "status": _status, "list": _list, "logs": _logs, "clean": _clean}[args.command](
            args)
    except (RunNotFound, ValueError) as e:
        console.print(f"parallelrun {args.command}: {e}", style="red", markup=False, highlight=False)
        return 2
    except Exception as e:  # a storage fault, in one line
        error = storage_error(e)
        if error is None:
            raise
        console.print(str(error), style="red", markup=False, highlight=False)
        return error.exit_code


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def _report(args) -> int:
    from parallelrun.runner.report import gather
    from parallelrun.runner.reportpage import render
    from parallelrun.runner.runfolders import locate

    fs, layout = locate(args.run)
    report = gather(fs, layout)
    path = args.output or f"{layout.run_id}.html"
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(report))
    print(path)
    for missing in report.missing:
        print(f"not in the report: {missing}", file=sys.stderr)
    return 0


def _status(args) -> int:
    import time

    from parallelrun.runner.reportpage import duration
    from parallelrun.runner.runfolders import describe, locate

    fs, layout = locate(args.run)
    status = describe(fs, layout)
    if args.output == "json":
        _print_json(status.to_dict())
        return 0
    c = status.counts
    total = "?" if status.total is None else f"{status.total:,}"
    print(f"run {status.run_id}: {status.phase}")
    print(f"  mini-batches: {c.mini_batches:,}/{total} ({c.mini_batches_failed:,} failed)   "
          f"items: {c.items_succeeded:,} succeeded, {c.items_failed:,} failed")
    if status.started is not None:
        took = f", took {duration(status.finished - status.started)}" if status.finished is not None else ""
        eta = f", ETA {duration(status.eta_seconds)}" if status.eta_seconds is not None else ""
        print(f"  started {duration(time.time() - status.started)} ago{took}{eta}")
    if status.holder is not None and status.holder.pid is not None:
        print(f"  run by pid {status.holder.pid} on {status.holder.host}")
    if status.reason:
        print(f"  {status.reason}")
    print(f"  {status.uri}")
    return 0


def _list(args) -> int:
    import time

    from parallelrun.runner.reportpage import byte_size, duration
    from parallelrun.runner.runfolders import list_runs

    runs = list_runs(args.output_uri)
    if args.output == "json":
        _print_json({"output": args.output_uri, "runs": [r.to_dict() for r in runs]})
        return 0
    if not runs:
        print(f"{args.output_uri}: no run")
        return 0
    now = time.time()
    rows = [("RUN", "STATE", "MINI-BATCHES", "SIZE", "AGE")]
    for r in runs:
        total = "?" if r.total is None else f"{r.total:,}"
        rows.append((r.run_id, r.phase, f"{r.counts.mini_batches:,}/{total}", byte_size(r.size),
                     duration(now - r.started) if r.started is not None else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _logs(args) -> int:
    from parallelrun.runner.runfolders import RunNotFound, is_running, locate
    from parallelrun.runner.runlogs import log_dir, log_files, read_lines

    fs, layout = locate(args.run)
    folder = log_dir(fs, layout)
    if folder is None:
        raise RunNotFound(f"run {layout.run_id} has no worker logs on this machine (a run on a cluster: "
                          f"`kubectl logs -l job-name=...` shows its pods' logs)")
    files = log_files(folder, args.worker)
    if not files and not args.follow:
        which = f"worker {args.worker}" if args.worker is not None else "any worker"
        raise RunNotFound(f"run {layout.run_id}: no log of {which} in {folder}")

    lines = read_lines(files, follow=args.follow, running=lambda: is_running(fs, layout), folder=folder,
                       worker=args.worker)
    for name, line in lines:
        if args.output == "json":
            print(json.dumps({"worker": name, "line": line}), flush=args.follow)
        else:
            print(f"[{name}] {line}", flush=args.follow)
    return 0


def _clean(args) -> int:
    from parallelrun.runner.reportpage import byte_size
    from parallelrun.runner.runfolders import clean, parse_duration

    older = parse_duration(args.older_than) if args.older_than is not None else None
    result = clean(args.output_uri, keep=args.keep, older_than=older, dry_run=args.dry_run)
    if args.output == "json":
        _print_json({"dryRun": args.dry_run, **result.to_dict()})
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for r in result.removed:
        print(f"{verb} {r.run_id} ({r.phase}, {byte_size(r.size)})")
    for r in result.running:
        print(f"kept {r.run_id}: it is running")
    if not result.removed:
        print("nothing to remove")
    return 0
