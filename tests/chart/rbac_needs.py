"""What the operator needs of the Kubernetes API, as (apiGroup, resource, verb): exactly the calls it makes.

The chart's RBAC grants these and nothing more (tests/chart/test_helm_chart.py), and the
operator makes these calls and no other (tests/operator/test_operator_rbac.py records them).
"""

SECRET_NEED = ("", "secrets", "get")  # spec.storage.secretRef, read one by one; where: the chart's rbac values

# (apiGroup, resource, verb) the operator calls in each namespace it watches.
NAMESPACED_NEEDS = [
    # kopf: watch the kinds, patch their finalizers and progress annotations
    *[("parallelrun.dev", r, v) for r in ("batchinferencejobs", "pipelineschedules", "pipelineruns")
      for v in ("list", "watch", "patch")],
    *[("parallelrun.dev", f"{r}/status", "patch") for r in ("batchinferencejobs", "pipelineschedules", "pipelineruns")],
    # children: a PipelineRun's BatchInferenceJobs, a PipelineSchedule's PipelineRuns (pruned by delete)
    *[("parallelrun.dev", r, v) for r in ("batchinferencejobs", "pipelineruns") for v in ("create", "get")],
    ("parallelrun.dev", "pipelineruns", "delete"),
    # Jobs: created, watched, suspended by patch, adopted by get after a restart (deleted by the garbage collector)
    *[("batch", "jobs", v) for v in ("get", "list", "watch", "create", "patch")],
    *[("", "pods", v) for v in ("list", "watch")],
    ("", "configmaps", "get"), ("", "configmaps", "create"),
    SECRET_NEED,
    ("", "events", "create"),
]
CLUSTER_NEEDS = [("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")]
# Only after a restart: a child created before it is adopted (a create meets 409, then a get).
ADOPTION_NEEDS = [("parallelrun.dev", "batchinferencejobs", "get"), ("parallelrun.dev", "pipelineruns", "get"),
                  ("batch", "jobs", "get")]
# Never a call: the API server checks it of owner references with blockOwnerDeletion.
OWNER_REFERENCE_GRANTS = [("parallelrun.dev", f"{r}/finalizers", "update")
                          for r in ("batchinferencejobs", "pipelineschedules", "pipelineruns")]
NAMESPACE_GRANTS = [("", "namespaces", v) for v in ("list", "watch")]  # kopf follows the watched namespaces
PEERING_VERBS = ("get", "list", "watch", "patch")
