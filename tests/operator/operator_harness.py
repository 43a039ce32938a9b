"""Helpers of the operator tests: the emulated cluster, the fake kubelet, test resources."""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import itertools
import json
import os
import sys
import uuid
from pathlib import Path

import aiohttp.web
import attrs
import jsonpatch
import kmock

from parallelrun.operator.kit.kube import KubeApi, path
from parallelrun.operator.kit.observe import COMPLETION_INDEX
from parallelrun.runner.api import BATCH_INFERENCE_JOB, GROUP, VERSION

PLURAL = BATCH_INFERENCE_JOB.plural

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "ns"
IMAGE = "example.com/scorer:1.0"
TEST_TOKEN = "tests"  # the tests' own client sends it, so the operator's calls can be told apart
_VERBS = {kmock.action.FETCH: "get", kmock.action.LIST: "list", kmock.action.WATCH: "watch",
          kmock.action.CREATE: "create", kmock.action.UPDATE: "patch", kmock.action.DELETE: "delete"}
BIJ_API = f"{GROUP}/{VERSION}"


@attrs.define
class Fault:
    """The API server's answer to the operator's `verb` on `resource` (plural[/subresource]) `name`,
    given instead of serving it, `times` times (None: every time); `hits` counts the answers given."""

    verb: str
    resource: str
    name: str | None
    status: int
    reason: str
    message: str
    details: dict | None = None
    retry_after: int | None = None
    times: int | None = None
    hits: int = 0

    def answer(self, verb: str, resource: str, name: str | None) -> aiohttp.web.Response | None:
        if (verb, resource) != (self.verb, self.resource) or self.name not in (None, name):
            return None
        if self.times is not None and self.hits >= self.times:
            return None
        self.hits += 1
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return aiohttp.web.json_response(
            {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": self.status,
             "reason": self.reason, "message": self.message, "details": self.details or {}},
            status=self.status, headers=headers)


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    """The emulator, plus what the API server adds to objects, plus a count of creations."""

    _versions: itertools.count = attrs.field(factory=lambda: itertools.count(1), init=False)
    creations: collections.Counter = attrs.field(factory=collections.Counter, init=False)
    writes: list = attrs.field(factory=list, init=False)  # (method, path) of every change requested
    operator_calls: set = attrs.field(factory=set, init=False)  # (apiGroup, resource, verb), not the tests'
    operator_selectors: dict = attrs.field(factory=dict, init=False)  # resource → labelSelector of its watch
    faults: list = attrs.field(factory=list, init=False)  # see refuse()

    def refuse(self, verb: str, resource: str, name: str | None = None, *, status: int, reason: str,
               message: str, **fault) -> Fault:
        """Answer the operator's `verb` (create, get, patch...) on `resource` with an error; see Fault."""
        self.faults.append(Fault(verb, resource, name, status, reason, message, **fault))
        return self.faults[-1]

    async def _handle(self, request):
        data = request.data
        answer = None
        if (request.action in _VERBS and request.resource is not None and request.resource.plural
                and request.headers.get("Authorization") != f"Bearer {TEST_TOKEN}"):
            plural = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
            verb = "update" if request.method.value == "PUT" else _VERBS[request.action]
            self.operator_calls.add((request.resource.group or "", plural, verb))
            if verb == "watch":
                self.operator_selectors[plural] = request.params.get("labelSelector")
            name = (data.get("metadata") or {}).get("name") if verb == "create" and isinstance(data, dict) \
                else request.name
            answer = next(filter(None, (f.answer(verb, plural, name) for f in self.faults)), None)
        if request.method in ("POST", "PATCH", "PUT", "DELETE"):
            self.writes.append((request.method.value, request.url.path))
        if answer is not None:  # refused: nothing is stored
            return answer
        if request.resource is not None and isinstance(data, list):  # a JSON patch, as kopf sends
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": str(next(self._versions))})
        if request.resource is not None and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            meta["resourceVersion"] = str(next(self._versions))
            if request.action == kmock.action.CREATE:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("generation", 1)
                meta.setdefault("creationTimestamp", _now())
                meta.setdefault("namespace", request.namespace)
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            elif request.action == kmock.action.UPDATE and request.subresource is None and "spec" in data:
                current = self.objects[request.resource, request.namespace, request.name]
                meta["generation"] = current["metadata"].get("generation", 1) + 1
        try:
            response = await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as e:  # optimistic concurrency, as the API server answers it
            raise kmock.KubernetesError(422, "Invalid", str(e)) from e
        if request.action == kmock.action.CREATE and response.status < 300:
            self.creations[request.resource.plural, request.data["metadata"].get("name")] += 1
        return response

    def get(self, plural: str, name: str, namespace: str = NAMESPACE) -> dict | None:
        """An object as stored now, or None."""
        for (resource, ns, obj_name), obj in self.objects.items():
            if resource.plural == plural and ns == namespace and obj_name == name and not obj.deleted:
                return obj.raw
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def crd_resource_info(crd: dict) -> tuple[str, kmock.ResourceInfo]:
    names, version = crd["spec"]["names"], crd["spec"]["versions"][0]
    return (f"{crd['spec']['group']}/{version['name']}/{names['plural']}", kmock.ResourceInfo(
        kind=names["kind"], singular=names["singular"], namespaced=crd["spec"]["scope"] == "Namespaced",
        shortnames=set(names.get("shortNames", [])), categories=set(names.get("categories", [])),
        subresources=set(version.get("subresources", {})),
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"}))


async def eventually(check, timeout: float = 10.0, interval: float = 0.02):
    """Poll `check()` until it returns something truthy; return that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check.__doc__ or check}")
        await asyncio.sleep(interval)


def report(mb_ok: int, mb_failed: int = 0, items_ok: int | None = None, items_failed: int | None = None,
           reason: str | None = None) -> str:
    """A runner's termination message."""
    message = {"miniBatches": {"succeeded": mb_ok, "failed": mb_failed},
               "items": {"succeeded": mb_ok if items_ok is None else items_ok,
                         "failed": mb_failed if items_failed is None else items_failed}}
    if reason:
        message["reason"] = reason
    return json.dumps(message)


class Kubelet:
    """Plays the Job controller and the kubelet: makes the pods of a Job and ends them."""

    def __init__(self, api: KubeApi, cluster: Cluster):
        self.api, self.cluster = api, cluster

    async def start(self, job_name: str, index: int = 0, attempt: int = 0) -> str:
        job = self.cluster.get("jobs", job_name)
        template = job["spec"]["template"]
        name = f"{job_name}-{index}-{attempt}"
        labels = dict(template["metadata"]["labels"], **{"batch.kubernetes.io/job-name": job_name})
        if job["spec"].get("completionMode") == "Indexed":
            labels[COMPLETION_INDEX] = str(index)
        await self.api.create(path("v1", "pods", NAMESPACE), {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels,
                         "annotations": {"batch.kubernetes.io/job-index-failure-count": str(attempt)},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                              "uid": job["metadata"]["uid"], "controller": True}]},
            "spec": template["spec"],
            "status": {"phase": "Running"}})
        return name

    async def finish(self, pod: str, exit_code: int, message: str = "") -> None:
        terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error", "message": message}
        await self.api.merge_patch(path("v1", "pods", NAMESPACE, pod, "status"), {"status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{"name": "runner", "state": {"terminated": terminated}}]}})

    async def run(self, job_name: str, index: int, exit_code: int, message: str = "", attempt: int = 0) -> str:
        pod = await self.start(job_name, index, attempt)
        await self.finish(pod, exit_code, message)
        return pod

    async def job_condition(self, job_name: str, type_: str, reason: str, message: str = "", **status) -> None:
        await self.api.merge_patch(path("batch/v1", "jobs", NAMESPACE, job_name, "status"), {"status": dict(
            status, conditions=[{"type": type_, "status": "True", "reason": reason, "message": message}])})


class ProcessKubelet:
    """Runs each pod of the operator's Jobs as a local process, as a kubelet would run its container.

    The container's command and environment as built, its volumes as folders (a
    ConfigMap's keys as files, an emptyDir as an empty folder) with mount paths mapped
    onto them, the Secrets of envFrom as variables, JOB_COMPLETION_INDEX as the Job
    controller sets it, and the termination message read back into the pod's status.
    Only `python` becomes this interpreter, as if the image had parallelrun installed.
    """

    def __init__(self, cluster: Cluster, kubelet: Kubelet, root: Path):
        self.cluster, self.kubelet, self.root = cluster, kubelet, root

    async def run(self, job_name: str, index: int) -> int:
        pod = await self.kubelet.start(job_name, index)
        template = self.cluster.get("jobs", job_name)["spec"]["template"]["spec"]
        container = template["containers"][0]
        folder = self.root / pod
        mounts = {m["mountPath"]: self._volume(folder, next(v for v in template["volumes"] if v["name"] == m["name"]))
                  for m in container["volumeMounts"]}

        def mapped(value: str) -> str:
            for mount_path, host in mounts.items():
                if value == mount_path or value.startswith(mount_path + "/"):
                    return str(host) + value[len(mount_path):]
            return value

        env = {"PATH": os.environ["PATH"], "PARALLELRUN_TERMINATION_LOG": str(folder / "termination-log")}
        for source in container.get("envFrom", []):
            secret = self.cluster.get("secrets", source["secretRef"]["name"])
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
        env.update({e["name"]: mapped(e["value"]) for e in container["env"]})
        if self.cluster.get("jobs", job_name)["spec"].get("completionMode") == "Indexed":
            env["JOB_COMPLETION_INDEX"] = str(index)
        command = [sys.executable if arg == "python" else mapped(arg) for arg in container["command"]]
        process = await asyncio.create_subprocess_exec(*command, env=env, cwd=folder,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
        log = folder / "termination-log"
        message = log.read_text() if log.exists() else output.decode()[-4000:]  # FallbackToLogsOnError
        await self.kubelet.finish(pod, process.returncode, message)
        if process.returncode:
            print(output.decode())
        return process.returncode

    async def run_to_the_end(self, name: str, nodes: int) -> dict:
        """Run every scoring pod of Running resource `name` at once, then its merge pod; the final status."""
        codes = await asyncio.gather(*(self.run(f"{name}-score", i) for i in range(nodes)))
        assert codes == [0] * nodes, codes
        await eventually(lambda: status_of(self.cluster, name).get("phase") == "Merging", timeout=20)
        assert await self.run(f"{name}-merge", 0) == 0
        return await eventually(lambda: status_of(self.cluster, name).get("phase") in ("Succeeded", "Failed")
                                and status_of(self.cluster, name), timeout=20)

    def _volume(self, folder: Path, volume: dict) -> Path:
        host = folder / "volumes" / volume["name"]
        host.mkdir(parents=True)
        if "configMap" in volume:
            for key, text in self.cluster.get("configmaps", volume["configMap"]["name"])["data"].items():
                (host / key).write_text(text)
        return host


def resource(name: str, inputs: dict, **spec) -> dict:
    """A BatchInferenceJob over `inputs`: 10 files, one per mini-batch, two nodes."""
    full = {"input": {"uri": inputs["input"], "type": "files"}, "code": {"entryScript": "score.py"},
            "output": {"uri": inputs["output"]}, "miniBatchSize": 1, "nodeCount": 2}
    full.update(spec)
    return {"apiVersion": BIJ_API, "kind": "BatchInferenceJob",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": full}


async def create(kube: KubeApi, body: dict) -> dict:
    return await kube.create(path(BIJ_API, PLURAL, NAMESPACE), body)


def uid_of(cluster: Cluster, name: str, plural: str = PLURAL) -> str:
    return cluster.get(plural, name)["metadata"]["uid"]


def status_of(cluster: Cluster, name: str) -> dict:
    return (cluster.get(PLURAL, name) or {}).get("status") or {}


def condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})
