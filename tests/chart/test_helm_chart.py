"""The Helm chart, checked with a real helm: lint, render, and what the rendered objects say."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from chart_paths import CHART, NAMESPACE
from crd_validation import CustomResourceValidator
from kubernetes_validate.utils import latest_version
from rbac_needs import (
    CLUSTER_NEEDS,
    NAMESPACE_GRANTS,
    NAMESPACED_NEEDS,
    OWNER_REFERENCE_GRANTS,
    PEERING_VERBS,
    SECRET_NEED,
)

from parallelrun.operator.main import parser as operator_parser

Render = Callable[..., list[dict]]
FULLNAME = "rel-parallelrun"
KUBERNETES_VERSIONS = ("1.29.0", latest_version())
SCENARIOS = {
    "default": [],
    "peered": ["--set", "replicaCount=2"],
    "namespaced": ["--set", "watch.namespaces={team-a,team-b}"],
    "namespaced peered": ["--set", "watch.namespaces={team-a,team-b}", "--set", "replicaCount=3"],
    "service monitor": ["--set", "metrics.serviceMonitor.enabled=true"],
    "no metrics": ["--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"],
    "secrets in two namespaces": ["--set", "rbac.secretNamespaces={ml,team-b}"],
    "secrets everywhere": ["--set", "rbac.secretsInAllNamespaces=true"],
    "grafana dashboards": ["--set", "grafana.dashboards.enabled=true"],
    "bring your own account": ["--set", "rbac.create=false", "--set", "serviceAccount.create=false",
                               "--set", "serviceAccount.name=ops-sa"],
}
KOPF_KINDS = {"ClusterKopfPeering", "KopfPeering"}



def one(objects: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
             and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"{len(found)} {kind} named {name} in {namespace}"
    return found[0]


def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def container(objects: list[dict]) -> dict:
    (operator,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


def allows(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r["verbs"]
               for r in rules)


def missing(rules: list[dict], needs: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [need for need in needs if not allows(rules, *need)]


def grants(rules: list[dict]) -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) the rules grant; no wildcard is allowed."""
    found = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert not [grant for grant in found if "*" in grant], "a wildcard grants more than the operator calls"
    return found


# Everything the operator does in a namespace but read Secrets, which the rbac values place.
WORK = set(NAMESPACED_NEEDS) - {SECRET_NEED} | set(OWNER_REFERENCE_GRANTS)


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["appVersion"]) == ("v2", "parallelrun", "0.1.0")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(helm: Path, scenario: str) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *SCENARIOS[scenario])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_objects_match_kubernetes_schemas(render: Render, crd_validator: CustomResourceValidator,
                                                   scenario: str, version: str) -> None:
    for obj in render(*SCENARIOS[scenario]):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in KOPF_KINDS:
            assert crd_validator.validate(obj) == [], where
        elif obj["kind"] == "ServiceMonitor":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", where
        else:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")


def test_default_install(render: Render) -> None:
    objects = render()
    assert kinds(objects) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    deployment = one(objects, "Deployment", FULLNAME, NAMESPACE)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    operator = container(objects)
    assert operator["image"] == "ghcr.io/parallelrun/parallelrun:0.1.0"
    assert operator["command"] == ["parallelrun", "operator"]
    assert operator["args"] == ["--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8081/healthz",
                                "--metrics-port=8080"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["PARALLELRUN_JOB_IMAGE"] == operator["image"]
    assert env["PARALLELRUN_LOG_LEVEL"] == "INFO"
    assert env["PARALLELRUN_LOG_FORMAT"] == "full"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_operator_accepts_the_rendered_command(render: Render, scenario: str) -> None:
    objects = render(*SCENARIOS[scenario])
    operator = container(objects)
    assert operator["command"] == ["parallelrun", "operator"]
    args = operator_parser().parse_args(operator["args"])
    namespaces = [o["metadata"]["namespace"] for o in objects if o["kind"] == "RoleBinding"
                  and o["metadata"]["name"] == FULLNAME]
    assert args.namespace == namespaces and args.all_namespaces == (not namespaces)
    replicas = one(objects, "Deployment")["spec"]["replicas"]
    assert (args.standalone, args.peering) == ((True, None) if replicas == 1 else (False, FULLNAME))
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert args.metrics_port == ports.get("metrics")
    assert args.liveness == f"http://0.0.0.0:{ports['health']}/healthz"


def test_cluster_wide_rbac_grants_exactly_the_operators_calls(render: Render) -> None:
    objects = render()
    rules = one(objects, "ClusterRole", FULLNAME)["rules"]
    assert grants(rules) == WORK | set(CLUSTER_NEEDS), "no Secret anywhere by default"
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]
    assert not allows(rules, "kopf.dev", "clusterkopfpeerings", "get"), "standalone needs no peering"
    binding = one(objects, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"]["name"] == FULLNAME
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_storage_secrets_are_read_only_where_the_values_say(render: Render) -> None:
    objects = render(*SCENARIOS["secrets in two namespaces"])
    assert SECRET_NEED not in grants(one(objects, "ClusterRole", FULLNAME)["rules"])
    for namespace in ("ml", "team-b"):
        assert grants(one(objects, "Role", f"{FULLNAME}-secrets", namespace)["rules"]) == {SECRET_NEED}
        binding = one(objects, "RoleBinding", f"{FULLNAME}-secrets", namespace)
        assert binding["roleRef"]["name"] == f"{FULLNAME}-secrets"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    everywhere = grants(one(render(*SCENARIOS["secrets everywhere"]), "ClusterRole", FULLNAME)["rules"])
    assert everywhere == WORK | set(CLUSTER_NEEDS) | {SECRET_NEED}


def test_secrets_are_only_read_one_by_one(render: Render) -> None:
    for scenario in ("default", "namespaced", "secrets in two namespaces", "secrets everywhere"):
        for obj in render(*SCENARIOS[scenario]):
            if obj["kind"] in ("ClusterRole", "Role"):
                secret_verbs = {v for r in obj["rules"] if "secrets" in r["resources"] for v in r["verbs"]}
                assert secret_verbs <= {"get"}, f"{scenario}: {obj['kind']} lets the operator {secret_verbs}"


def test_replicas_take_turns_through_cluster_peering(render: Render) -> None:
    objects = render(*SCENARIOS["peered"])
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    args = container(objects)["args"]
    assert f"--peering={FULLNAME}" in args and "--standalone" not in args
    assert one(objects, "ClusterKopfPeering", FULLNAME)["apiVersion"] == "kopf.dev/v1"
    rules = one(objects, "ClusterRole", FULLNAME)["rules"]
    assert missing(rules, [("kopf.dev", "clusterkopfpeerings", v) for v in PEERING_VERBS]) == []


def test_namespaced_watch(render: Render) -> None:
    objects = render(*SCENARIOS["namespaced"])
    args = container(objects)["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"] and "--all-namespaces" not in args
    cluster_rules = one(objects, "ClusterRole", FULLNAME)["rules"]
    assert grants(cluster_rules) == set(CLUSTER_NEEDS) | set(NAMESPACE_GRANTS), "no cluster-wide writes"
    for namespace in ("team-a", "team-b"):
        assert grants(one(objects, "Role", FULLNAME, namespace)["rules"]) == WORK | {SECRET_NEED}
        binding = one(objects, "RoleBinding", FULLNAME, namespace)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert not [o for o in objects if o["kind"] in KOPF_KINDS]


def test_namespaced_replicas_take_turns_in_each_namespace(render: Render) -> None:
    objects = render(*SCENARIOS["namespaced peered"])
    for namespace in ("team-a", "team-b"):
        one(objects, "KopfPeering", FULLNAME, namespace)
        rules = one(objects, "Role", FULLNAME, namespace)["rules"]
        assert missing(rules, [("kopf.dev", "kopfpeerings", v) for v in PEERING_VERBS]) == []
    assert not [o for o in objects if o["kind"] == "ClusterKopfPeering"]


def test_pod_security_is_restricted(render: Render) -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(objects)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert not security.get("privileged")
    assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC"))
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs a writable /tmp"


def test_liveness_probe_targets_kopfs_endpoint(render: Render) -> None:
    operator = container(render())
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    probe = operator["livenessProbe"]["httpGet"]
    assert (ports[probe["port"]], probe["path"]) == (8081, "/healthz")
    assert f"--liveness=http://0.0.0.0:{ports[probe['port']]}{probe['path']}" in operator["args"]


def test_metrics_service_and_service_monitor(render: Render) -> None:
    objects = render(*SCENARIOS["service monitor"])
    operator = container(objects)
    service = one(objects, "Service", f"{FULLNAME}-metrics", NAMESPACE)
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (8080, "metrics")
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in operator["ports"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = one(objects, "ServiceMonitor", FULLNAME, NAMESPACE)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def test_metrics_disabled_serves_and_scrapes_nothing(render: Render) -> None:
    objects = render(*SCENARIOS["no metrics"])
    assert "Service" not in kinds(objects) and "ServiceMonitor" not in kinds(objects)
    operator = container(objects)
    assert not any(a.startswith("--metrics-port") for a in operator["args"])
    assert [p["name"] for p in operator["ports"]] == ["health"]


def test_existing_service_account_without_rbac(render: Render) -> None:
    objects = render(*SCENARIOS["bring your own account"])
    assert kinds(objects) == ["Deployment", "Service"]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"


def test_values_reach_the_pod(render: Render) -> None:
    objects = render("--set", "jobImage=registry.example/scorer:2", "--set", "logLevel=DEBUG",
                     "--set", "logFormat=json",
                     "--set", "image.tag=0.2.0", "--set", "nodeSelector.pool=system",
                     "--set", "tolerations[0].key=system", "--set", "tolerations[0].operator=Exists")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    operator = container(objects)
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["PARALLELRUN_JOB_IMAGE"] == "registry.example/scorer:2"
    assert env["PARALLELRUN_LOG_LEVEL"] == "DEBUG"
    assert env["PARALLELRUN_LOG_FORMAT"] == "json"
    assert operator["image"] == "ghcr.io/parallelrun/parallelrun:0.2.0"
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == [{"key": "system", "operator": "Exists"}]


@pytest.mark.parametrize(("values", "words"), [
    (["--set", "replicaCount=0"], "replicaCount"),
    (["--set", "watch.namespaces={Not_A_Namespace}"], "namespaces"),
    (["--set", "logLevel=LOUD"], "logLevel"),
    (["--set", "metrics.prot=9090"], "prot"),
])
def test_values_schema_rejects_mistakes(helm: Path, values: list[str], words: str) -> None:
    result = run_helm(helm, "template", "rel", str(CHART), *values)
    assert result.returncode != 0 and words in result.stderr, result.stderr


def _dashboard_config_maps(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{FULLNAME}-dashboards"]


def test_grafana_dashboards_are_off_by_default(render: Render) -> None:
    assert _dashboard_config_maps(render()) == []


def test_grafana_dashboards_for_the_sidecar(render: Render) -> None:
    objects = render("--set", "grafana.dashboards.enabled=true", "--set", "grafana.dashboards.namespace=monitoring",
                     "--set", "grafana.dashboards.annotations.grafana_folder=parallelrun")
    (config_map,) = _dashboard_config_maps(objects)
    metadata = config_map["metadata"]
    assert metadata["labels"]["grafana_dashboard"] == "1" and metadata["namespace"] == "monitoring"
    assert metadata["annotations"] == {"grafana_folder": "parallelrun"}
    shipped = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(config_map["data"]) == shipped and shipped
    for name, text in config_map["data"].items():
        dashboard = json.loads(text)
        assert dashboard["panels"] and dashboard["uid"], name


def _metric_names() -> set[str]:
    """The names the operator's metrics are exposed under (a Counter with _total, a Histogram with
    _bucket, _sum and _count), from operator/kit/metrics.py itself."""
    from prometheus_client import Counter, Gauge, Histogram

    from parallelrun.operator.kit import metrics

    suffixes = {Counter: ("_total",), Gauge: ("",), Histogram: ("_bucket", "_sum", "_count")}
    names = set()
    for value in vars(metrics).values():
        for kind, endings in suffixes.items():
            if isinstance(value, kind):
                names |= {value._name + ending for ending in endings}
    return names


def test_every_metric_a_dashboard_queries_exists() -> None:
    exposed = _metric_names()
    for path in sorted((CHART / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        queried = {name for panel in dashboard["panels"] for target in panel["targets"]
                   for name in re.findall(r"\bparallelrun_[a-z_]+", target["expr"])}
        assert queried and queried <= exposed, (path.name, sorted(queried - exposed))
        titles = " ".join(p["title"].lower() for p in dashboard["panels"])
        for subject in ("phase", "items per second", "failures", "queue time", "schedule lag"):
            assert subject in titles, (path.name, subject)
