"""`parallelrun operator`: run the operator of BatchInferenceJobs, PipelineRuns and PipelineSchedules.

examples:
  parallelrun operator --all-namespaces --standalone
  parallelrun operator -n team-a -n team-b --peering parallelrun --liveness http://0.0.0.0:8081/healthz \\
      --metrics-port 8080 --log-format json

One replica runs --standalone; more replicas share a kopf peering object (--peering),
so only one of them handles resources at a time and another takes over if it dies.
Replicas of equal priority would all freeze (kopf's rule), so each picks a random
one unless --priority is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import random

_LOG_FORMATS = ("full", "plain", "json")  # kopf.LogFormat's members; kopf is imported to run, not for --help


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parallelrun operator", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[2:]))
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; glob patterns such as team-* work)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch all namespaces (the default when no --namespace is given)")
    peering = p.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true", help="a single replica: no peering")
    peering.add_argument("--peering", metavar="NAME", help="the kopf peering object shared by the replicas")
    p.add_argument("--priority", type=int, metavar="N",
                   help="peering priority: the highest live replica is active (default: random)")
    p.add_argument("--liveness", metavar="URL", help="serve a liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on this port")
    p.add_argument("--job-image", default=os.environ.get("PARALLELRUN_JOB_IMAGE") or None, metavar="IMAGE",
                   help="image of the scoring and merge pods when spec.environment.image is unset, and of "
                        "pipeline container and component steps that name none (default: $PARALLELRUN_JOB_IMAGE)")
    p.add_argument("--local-storage", action="store_true",
                   help="let specs name local paths and file:// for what the operator reads and writes itself (input, "
                        "output, workdir...): only where the operator and the pods mount the same volume at the same "
                        "path; by default they must name shared storage such as az://")
    p.add_argument("--log-format", choices=_LOG_FORMATS, default=os.environ.get("PARALLELRUN_LOG_FORMAT", "full"),
                   help="json: one JSON object per line (default: $PARALLELRUN_LOG_FORMAT or full)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logs (default level: $PARALLELRUN_LOG_LEVEL or INFO)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import kopf
    from prometheus_client import start_http_server

    level = "DEBUG" if args.verbose else os.environ.get("PARALLELRUN_LOG_LEVEL", "INFO").upper()
    kopf.configure(debug=level == "DEBUG", log_format=kopf.LogFormat[args.log_format.upper()])
    logging.getLogger().setLevel(level)

    from . import handlers  # noqa: F401  (registers the handlers with kopf)

    if args.metrics_port:
        start_http_server(args.metrics_port)
    kopf.run(**run_options(args), memo=kopf.Memo(default_image=args.job_image, local_storage=args.local_storage))
    return 0


def run_options(args: argparse.Namespace) -> dict:
    """kopf.run's scope, peering and liveness options for these command-line arguments."""
    options = {"clusterwide": not args.namespace, "namespaces": args.namespace,
               "standalone": True if args.standalone else None, "liveness_endpoint": args.liveness}
    if args.peering:
        options["peering_name"] = args.peering
        options["priority"] = args.priority if args.priority is not None else random.randint(1, 2**31 - 1)
    return options
