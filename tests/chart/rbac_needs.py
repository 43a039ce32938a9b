"""What the operator needs of the Kubernetes API, as (apiGroup, resource, verb).

The chart's RBAC must grant it (tests/chart/test_helm_chart.py), and the operator must
ask for nothing more (tests/operator/test_operator_rbac.py records its calls).
"""

# (apiGroup, resource, verb) the operator uses in each namespace it watches.
NAMESPACED_NEEDS = [
    *[("parallelrun.dev", r, v) for r in ("batchinferencejobs", "pipelineschedules", "pipelineruns")
      for v in ("get", "list", "watch", "patch", "create", "delete")],
    *[("parallelrun.dev", f"{r}/status", v) for r in ("batchinferencejobs", "pipelineschedules", "pipelineruns")
      for v in ("get", "patch")],
    *[("parallelrun.dev", "pipelineruns", v) for v in ("get", "list", "watch", "create", "delete")],  # schedules
    *[("batch", "jobs", v) for v in ("get", "list", "watch", "create", "patch", "delete")],
    *[("", "pods", v) for v in ("get", "list", "watch")],
    *[("", "configmaps", v) for v in ("get", "list", "watch", "create", "patch")],
    ("", "secrets", "get"),
    ("", "events", "create"), ("", "events", "patch"), ("events.k8s.io", "events", "create"),
    *[("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")],
]
CLUSTER_NEEDS = [("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")]
PEERING_VERBS = ("get", "list", "watch", "patch")
