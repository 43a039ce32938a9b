"""Load a BatchInferenceJob into one normalized, validated spec.

`load_spec` takes the resource a user would `kubectl apply` (or just its `spec`),
applies Azure ML's defaults and reports every invalid field at once, each by its
path and with the fix. `JobSpec.to_dict()` gives the normalized camelCase spec back:
that is what the operator hands to the pods, and loading it again is lossless.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, overload

from .api import API_VERSION, BATCH_INFERENCE_JOB
from .contract import URI_SCHEME, PermanentError
from .problems import DNS_NAME, Problems

KIND = BATCH_INFERENCE_JOB.kind

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
# The types `input.options.columnTypes` may give a csv/jsonl column (pyarrow's names for them).
COLUMN_TYPES = ("string", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float32", "float64", "date32", "timestamp[s]", "timestamp[ms]", "timestamp[us]", "timestamp[ns]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_IN_FLIGHT = 1024  # spec.miniBatchesInFlight: calls of an async run() one worker keeps going

_SPEC_FIELDS = (
    "input", "sideInputs", "model", "code", "arguments", "miniBatchSize", "partitionKeys",
    "errorThreshold", "miniBatchErrorThreshold", "allowedFailedPercent", "output",
    "nodeCount", "processCountPerNode", "runInvocationTimeout", "initTimeout", "runMaxTry",
    "prefetchMiniBatches", "preprocessProcesses", "miniBatchesInFlight",
    "loggingLevel", "environment", "storage", "allowReuse", "retryFailed", "queueName", "priorityClassName",
)
_ENVIRONMENT_FIELDS = ("image", "env", "envFrom", "resources", "nodeSelector",
                       "tolerations", "serviceAccountName", "gpu")

# The values a field may take, in the order an error lists them (get_args).
InputType = Literal["tabular", "files"]
InputFormat = Literal["parquet", "csv", "jsonl"]
OutputAction = Literal["appendRow", "summaryOnly"]
OutputFormat = Literal["txt", "csv", "parquet", "jsonl"]
OutputLayout = Literal["file", "dataset"]  # one file, or (parquet) a folder of ordered parts
ResultsPerItem = Literal["one", "many"]  # one result per item (fewer: failed items), or any number
SizeUnit = Literal["count", "rows", "bytes"]  # files, rows, or bytes on disk
LoggingLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_Choice = TypeVar("_Choice", bound=str)  # one of these Literals


class SpecError(PermanentError, ValueError):
    """A resource with invalid fields; `.errors` has one "path: problem; fix" line each.
    Subclasses name what is invalid (`what`): a PipelineRun, a component."""

    what = KIND

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(f"invalid {self.what}:\n  " + "\n  ".join(errors))


def parse_size(text: str) -> int:
    """Bytes in a size such as "1MB" (decimal units) or "64MiB" (binary units)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class MiniBatchSize:
    """How input is cut: `count` files, `rows` rows, or about `bytes` bytes."""

    unit: SizeUnit
    value: int
    text: str | int  # as the user wrote it, for to_dict()


@dataclass(frozen=True)
class InputSpec:
    """Where the input is: `uri` (a file or a folder, listed) or `manifest` (a text file
    naming the input files, one a line), exactly one of them."""

    uri: str | None
    type: InputType
    format: InputFormat | None = None
    pattern: str | None = None
    options: dict = field(default_factory=dict)
    manifest: str | None = None

    @property
    def source(self) -> str:
        """The uri, or the manifest: what a message about the input names."""
        source = self.uri or self.manifest
        assert source is not None, "a loaded input has a uri or a manifest"
        return source


@dataclass(frozen=True)
class SideInput:
    name: str
    uri: str

    @property
    def env_var(self) -> str:
        return "PARALLELRUN_SIDE_INPUT_" + re.sub(r"[^A-Za-z0-9]", "_", self.name).upper()


MLFLOW_SCORER = "mlflow_scorer.py"  # the runner's own entry script for an MLflow model (code omitted)
OPENAI_SCORER = "openai_scorer.py"  # the runner's own entry script of `code: {builtin: openai}`
BUILTINS = ("openai",)
OPENAI_SETTINGS_ENV = "PARALLELRUN_OPENAI"  # a worker's OpenAISettings (JSON), its share of the limits
_OPENAI_FIELDS = ("endpoint", "apiKey", "model", "requestsPerMinute", "tokensPerMinute", "requestTimeout",
                  "maxRetries")


@dataclass(frozen=True)
class OpenAISettings:
    """`spec.code.openai`: where the builtin OpenAI scorer sends its requests and how fast.
    The key is read from the variable `api_key_env`, or (`api_key_secret`: Secret name and
    key) from contract.OPENAI_API_KEY_ENV, which the operator fills from that Secret."""

    endpoint: str  # the base URL, e.g. http://localhost:8000/v1
    api_key_env: str | None = None
    api_key_secret: tuple[str, str] | None = None
    model: str | None = None  # replaces each request's body.model
    requests_per_minute: int | None = None  # for the whole job; None: no limit
    tokens_per_minute: int | None = None
    request_timeout: int = 600  # seconds for one request
    max_retries: int = 8  # of a request throttled (429), failed by the server (5xx) or timed out

    def to_dict(self) -> dict:
        key = {"env": self.api_key_env} if self.api_key_env else \
            {"secretKeyRef": {"name": self.api_key_secret[0], "key": self.api_key_secret[1]}} \
            if self.api_key_secret else None
        return _prune({"endpoint": self.endpoint, "apiKey": key, "model": self.model,
                       "requestsPerMinute": self.requests_per_minute, "tokensPerMinute": self.tokens_per_minute,
                       "requestTimeout": self.request_timeout, "maxRetries": self.max_retries})

    @classmethod
    def from_dict(cls, d: dict) -> OpenAISettings:
        key = d.get("apiKey") or {}
        secret = key.get("secretKeyRef")
        return cls(endpoint=d["endpoint"], api_key_env=key.get("env"),
                   api_key_secret=(secret["name"], secret["key"]) if secret else None, model=d.get("model"),
                   requests_per_minute=d.get("requestsPerMinute"), tokens_per_minute=d.get("tokensPerMinute"),
                   request_timeout=d.get("requestTimeout", 600), max_retries=d.get("maxRetries", 8))

    def share(self, workers: int) -> OpenAISettings:
        """One worker's settings: the limits divided among `workers` (every worker of the job)."""
        def part(limit: int | None) -> int | None:
            return None if limit is None else max(1, limit // workers)

        return dataclasses.replace(self, requests_per_minute=part(self.requests_per_minute),
                                   tokens_per_minute=part(self.tokens_per_minute))


@dataclass(frozen=True)
class CodeSpec:
    entry_script: str
    uri: str | None = None
    config_map: str | None = None
    builtin: bool = False  # `entry_script` is the runner's: the MLflow scorer (code omitted) or a named builtin
    openai: OpenAISettings | None = None  # `builtin: openai`


@dataclass(frozen=True)
class OutputSpec:
    uri: str
    action: OutputAction = "appendRow"
    file_name: str = "parallel_run_step.txt"
    format: OutputFormat = "txt"
    layout: OutputLayout = "file"
    results_per_item: ResultsPerItem = "one"


@dataclass(frozen=True)
class GpuSpec:
    count: int
    resource_name: str = "nvidia.com/gpu"
    product: str | None = None


@dataclass(frozen=True)
class JobSpec:
    name: str
    namespace: str | None
    input: InputSpec
    code: CodeSpec
    output: OutputSpec
    mini_batch_size: MiniBatchSize
    side_inputs: tuple[SideInput, ...] = ()
    model_uri: str | None = None
    arguments: tuple[str, ...] = ()
    partition_keys: tuple[str, ...] = ()
    error_threshold: int = -1
    mini_batch_error_threshold: int = -1
    allowed_failed_percent: int = 100
    node_count: int = 1
    process_count_per_node: int | None = None  # None: the pod's CPUs (or GPUs), resolved where it runs
    run_invocation_timeout: int = 60
    init_timeout: int = 600
    run_max_try: int = 3
    prefetch_mini_batches: int = 2  # read ahead by each worker while run() computes
    preprocess_processes: int = 0  # a pod's processes for the entry script's preprocess(); 0: in the workers
    mini_batches_in_flight: int = 1  # calls of an async run() each worker keeps in flight
    logging_level: LoggingLevel = "INFO"
    environment: dict = field(default_factory=dict)  # pod-side fields, as written (camelCase)
    gpu: GpuSpec | None = None
    storage: dict = field(default_factory=dict)
    allow_reuse: bool = False
    retry_failed: bool = False  # rerun only the failed mini-batches of the finished run (repair.py)
    queue_name: str | None = None  # a Kueue LocalQueue: the Jobs wait, suspended, for its admission
    priority_class_name: str | None = None  # the pods' PriorityClass

    def to_dict(self) -> dict:
        """The normalized spec in the resource's camelCase shape."""
        out: dict[str, Any] = {
            "input": _prune({"uri": self.input.uri, "manifest": self.input.manifest, "type": self.input.type,
                             "format": self.input.format, "pattern": self.input.pattern,
                             "options": dict(self.input.options) or None}),
            "arguments": list(self.arguments),
            "miniBatchSize": self.mini_batch_size.text,
            "errorThreshold": self.error_threshold,
            "miniBatchErrorThreshold": self.mini_batch_error_threshold,
            "allowedFailedPercent": self.allowed_failed_percent,
            "output": {"uri": self.output.uri, "action": self.output.action,
                       "fileName": self.output.file_name, "format": self.output.format,
                       # only when not the default: the fingerprint (and run id) of every other spec stays as it was
                       **({"layout": self.output.layout} if self.output.layout != "file" else {}),
                       **({"resultsPerItem": "many"} if self.output.results_per_item == "many" else {})},
            "nodeCount": self.node_count,
            "runInvocationTimeout": self.run_invocation_timeout,
            "initTimeout": self.init_timeout,
            "runMaxTry": self.run_max_try,
            "loggingLevel": self.logging_level,
            "allowReuse": self.allow_reuse,
        }
        if self.code.openai:
            out["code"] = {"builtin": "openai", "openai": self.code.openai.to_dict()}
        elif not self.code.builtin:
            out["code"] = _prune({"uri": self.code.uri, "configMap": self.code.config_map,
                                  "entryScript": self.code.entry_script})
        if self.side_inputs:
            out["sideInputs"] = [{"name": s.name, "uri": s.uri} for s in self.side_inputs]
        if self.model_uri:
            out["model"] = {"uri": self.model_uri}
        if self.partition_keys:
            out["partitionKeys"] = list(self.partition_keys)
        if self.process_count_per_node is not None:
            out["processCountPerNode"] = self.process_count_per_node
        if self.prefetch_mini_batches != 2:  # only where set: run ids of earlier specs stay the same
            out["prefetchMiniBatches"] = self.prefetch_mini_batches
        if self.preprocess_processes:
            out["preprocessProcesses"] = self.preprocess_processes
        if self.mini_batches_in_flight != 1:
            out["miniBatchesInFlight"] = self.mini_batches_in_flight
        if self.environment:
            out["environment"] = self.environment
        if self.storage:
            out["storage"] = self.storage
        if self.retry_failed:
            out["retryFailed"] = True
        if self.queue_name:
            out["queueName"] = self.queue_name
        if self.priority_class_name:
            out["priorityClassName"] = self.priority_class_name
        return out

    def fingerprint(self, salt: bytes = b"") -> str:
        """The sha256 (hex) of the normalized spec's sorted-keys JSON, and of `salt` after it
        (the scoring script's bytes, for a local run id): equal for equal specs."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode() + salt).hexdigest()


def _prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def read_yaml(path: str, error: type[SpecError] = SpecError) -> Any:
    """The document of a YAML file; a missing or invalid file raises `error` in one line."""
    import yaml  # here: a worker process, which imports this module, reads no YAML

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise error([f"{path}: no such file"]) from None
    except yaml.YAMLError as e:
        raise error([f"{path}: not valid YAML: {e}"]) from None


def load_spec_file(path: str, overrides: Sequence[str] = ()) -> JobSpec:
    """Load a YAML file; relative local URIs are taken relative to the file's folder.

    `overrides` are `key.path=value` strings applied to `spec`; a value is read as YAML
    (`2`, `true`, `[a, b]`) or, where it is not valid YAML, taken as a string.
    """
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise SpecError([f"{path}: expected a BatchInferenceJob mapping, got {type(doc).__name__}"])
    for item in overrides:
        apply_override(doc, item)
    return load_spec(doc, base_dir=os.path.dirname(os.path.abspath(path)))


def apply_override(doc: dict, item: str) -> None:
    """Set `spec.<key.path>` of a resource from a `--set key.path=value` string."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SpecError([f"--set {item!r}: expected key=value, e.g. --set nodeCount=2"])
    target = doc.setdefault("spec", {}) if "spec" in doc or "kind" in doc else doc
    parts = key.removeprefix("spec.").split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise SpecError([f"--set {item!r}: spec.{part} is not a mapping"])
    try:
        target[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:  # e.g. a glob such as *.png: a plain string
        target[parts[-1]] = value


def load_spec(doc: dict, base_dir: str | None = None) -> JobSpec:
    """Validate and normalize a BatchInferenceJob resource (or its bare `spec`)."""
    return _Loader(base_dir).load(doc)


class _Loader(Problems):
    """Walks the resource once, collecting every error instead of stopping at the first."""

    def __init__(self, base_dir: str | None):
        super().__init__()
        self.base_dir = base_dir

    def load(self, doc: Any) -> JobSpec:
        if not isinstance(doc, dict):
            raise SpecError([f"resource: expected a mapping, got {type(doc).__name__}"])
        name, namespace = "job", None
        if "spec" in doc or "kind" in doc or "apiVersion" in doc:
            if doc.get("kind", KIND) != KIND:
                self.fail("kind", f"{doc.get('kind')!r} is not {KIND}")
            if doc.get("apiVersion", API_VERSION) != API_VERSION:
                self.fail("apiVersion", f"{doc.get('apiVersion')!r} is not served; use {API_VERSION}")
            meta = doc.get("metadata") or {}
            name = meta.get("name") or name
            if not isinstance(name, str) or not DNS_NAME.match(name):
                self.fail("metadata.name", f"{name!r} is not a valid name; use lower-case letters, digits, '-' "
                          "and '.', starting and ending with a letter or digit (it names the run's work folder)")
                name = "job"
            namespace = meta.get("namespace")
            spec = doc.get("spec")
        else:
            spec = doc
        if not isinstance(spec, dict):
            raise SpecError([*self.errors,
                             "spec: missing; a BatchInferenceJob needs spec.input, spec.code and spec.output"])
        result = self.spec(spec, name, namespace)
        if result is None:  # the problems are reported
            raise SpecError(self.errors)
        return result

    # -- helpers ---------------------------------------------------------------

    def mapping(self, path: str, value: Any, known: tuple[str, ...], required: bool = False) -> dict | None:
        """The mapping at `path`, or None (reported if required) when it is missing or not a mapping."""
        if value is None:
            if required:
                self.fail(path, "required; " + {
                    "spec.input": "give {uri: ..., type: tabular|files} (or manifest: instead of uri)",
                    "spec.output": "give {uri: ...} where the results go",
                    "spec.code": "give {entryScript: score.py} and where the code is (uri or configMap), "
                                 "or omit it and give spec.model.uri an MLflow model folder",
                }.get(path, "add it"))
            return None
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {type(value).__name__}")
            return None
        self.unknown(path, value, known)
        return value

    @overload
    def string(self, path: str, value: Any, required: bool = False, *, default: str) -> str: ...
    @overload
    def string(self, path: str, value: Any, required: bool = False, default: str | None = None) -> str | None: ...

    def string(self, path: str, value: Any, required: bool = False, default: str | None = None) -> str | None:
        if value is None:
            if required:
                self.fail(path, "required")
            return default
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {value!r}")
            return default
        return value

    @overload
    def choice(self, path: str, value: Any, options: tuple[_Choice, ...], default: _Choice) -> _Choice: ...
    @overload
    def choice(self, path: str, value: Any, options: tuple[_Choice, ...], default: None) -> _Choice | None: ...

    def choice(self, path: str, value: Any, options: tuple[_Choice, ...], default: _Choice | None) -> _Choice | None:
        if value is None:
            return default
        if value not in options:
            self.fail(path, f"{value!r} is not one of {', '.join(options)}")
            return default
        return value

    @overload
    def integer(self, path: str, value: Any, default: int, minimum: int) -> int: ...
    @overload
    def integer(self, path: str, value: Any, default: None, minimum: int) -> int | None: ...

    def integer(self, path: str, value: Any, default: int | None, minimum: int) -> int | None:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer >= {minimum}, got {value!r}")
            return default
        if value < minimum:
            self.fail(path, f"{value} is below the minimum {minimum}"
                      + ("; use -1 to ignore all failures" if minimum == -1 else ""))
            return default
        return value

    def uri(self, path: str, value: Any, required: bool = True) -> str | None:
        value = self.string(path, value, required=required)
        if value is None:
            return None
        if URI_SCHEME.match(value) or os.path.isabs(value) or self.base_dir is None:
            return value
        return os.path.normpath(os.path.join(self.base_dir, value)) + ("/" if value.endswith("/") else "")

    def string_list(self, path: str, value: Any, unique: bool = False) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(path, "expected a list of strings")
            return ()
        for i, v in enumerate(value):
            if not isinstance(v, str):
                self.fail(f"{path}[{i}]", f"{v!r} is not a string; quote it, e.g. \"{v}\"")
            elif unique and v in value[:i]:
                self.fail(f"{path}[{i}]", f"{v!r} is given twice")
        return tuple(v for v in value if isinstance(v, str))

    # -- sections --------------------------------------------------------------

    def spec(self, spec: dict, name: str, namespace: str | None) -> JobSpec | None:
        """The spec, or None where a problem was reported (in this call or before it)."""
        self.unknown("spec", spec, _SPEC_FIELDS)
        inp = self.input(spec.get("input"))
        model_given = spec.get("model") is not None
        files = isinstance(spec.get("input"), dict) and spec["input"].get("type") == "files"
        openai = isinstance(spec.get("code"), dict) and spec["code"].get("builtin") == "openai"
        output = self.output(spec.get("output"), mlflow_files=spec.get("code") is None and model_given and files,
                             openai=openai)
        code = self.code(spec.get("code"), model_given)
        if openai and inp is not None:
            inp = self.openai_input(inp)
        size = self.mini_batch_size(spec.get("miniBatchSize"), inp)
        keys = self.string_list("spec.partitionKeys", spec.get("partitionKeys"), unique=True)
        if keys and inp and inp.type != "tabular":
            self.fail("spec.partitionKeys",
                      "only a tabular input can be partitioned by keys; remove it or use type: tabular")
        elif keys and inp and inp.options.get("raw"):
            self.fail("spec.partitionKeys", "a raw jsonl input has no columns to partition by; remove it")
        model = self.mapping("spec.model", spec.get("model"), ("uri",)) or {}
        environment = self.mapping("spec.environment", spec.get("environment"), _ENVIRONMENT_FIELDS) or {}
        storage = self.mapping("spec.storage", spec.get("storage"), ("secretRef",)) or {}
        if storage.get("secretRef") is not None and not isinstance((storage["secretRef"] or {}).get("name"), str):
            self.fail("spec.storage.secretRef", "expected {name: <secret name>}")
        allow_reuse, retry_failed = spec.get("allowReuse", False), spec.get("retryFailed", False)
        for key, flag in (("allowReuse", allow_reuse), ("retryFailed", retry_failed)):
            if not isinstance(flag, bool):
                self.fail(f"spec.{key}", f"expected true or false, got {flag!r}")
        percent = spec.get("allowedFailedPercent", 100)
        if isinstance(percent, bool) or not isinstance(percent, int) or not -1 <= percent <= 100:
            self.fail("spec.allowedFailedPercent", f"{percent!r} is not a percentage; use a whole number "
                      "from 0 to 100, or -1 to disable")
            percent = 100
        side_inputs = self.side_inputs(spec.get("sideInputs"))
        model_uri = self.uri("spec.model.uri", model.get("uri"), required=bool(model))
        arguments = self.string_list("spec.arguments", spec.get("arguments"))
        error_threshold = self.integer("spec.errorThreshold", spec.get("errorThreshold"), -1, -1)
        mini_batch_error_threshold = self.integer(
            "spec.miniBatchErrorThreshold", spec.get("miniBatchErrorThreshold"), -1, -1)
        node_count = self.integer("spec.nodeCount", spec.get("nodeCount"), 1, 1)
        process_count_per_node = self.integer("spec.processCountPerNode", spec.get("processCountPerNode"), None, 1)
        run_invocation_timeout = self.integer("spec.runInvocationTimeout", spec.get("runInvocationTimeout"), 60, 1)
        init_timeout = self.integer("spec.initTimeout", spec.get("initTimeout"), 600, 1)
        run_max_try = self.integer("spec.runMaxTry", spec.get("runMaxTry"), 3, 1)
        prefetch_mini_batches = self.integer("spec.prefetchMiniBatches", spec.get("prefetchMiniBatches"), 2, 0)
        preprocess_processes = self.integer("spec.preprocessProcesses", spec.get("preprocessProcesses"), 0, 0)
        in_flight = self.integer("spec.miniBatchesInFlight", spec.get("miniBatchesInFlight"), 1, 1)
        if in_flight > MAX_IN_FLIGHT:
            self.fail("spec.miniBatchesInFlight", f"{in_flight} is above the maximum {MAX_IN_FLIGHT}; "
                      "useful values are 4-64 (a remote endpoint's or engine's concurrency per worker)")
            in_flight = 1
        logging_level: LoggingLevel = self.choice(
            "spec.loggingLevel", spec.get("loggingLevel"), get_args(LoggingLevel), "INFO")
        gpu = self.gpu(environment.get("gpu"))
        queue_name = self.object_name("spec.queueName", spec.get("queueName"), "a Kueue LocalQueue of this namespace")
        priority_class_name = self.object_name("spec.priorityClassName", spec.get("priorityClassName"),
                                               "a PriorityClass")
        if self.errors or inp is None or code is None or output is None:  # a missing section is a reported problem
            return None
        return JobSpec(
            name=name, namespace=namespace, input=inp, code=code, output=output,
            mini_batch_size=size,
            side_inputs=side_inputs,
            model_uri=model_uri,
            arguments=arguments,
            partition_keys=keys,
            error_threshold=error_threshold,
            mini_batch_error_threshold=mini_batch_error_threshold,
            allowed_failed_percent=percent,
            node_count=node_count,
            process_count_per_node=process_count_per_node,
            run_invocation_timeout=run_invocation_timeout,
            init_timeout=init_timeout,
            run_max_try=run_max_try,
            prefetch_mini_batches=prefetch_mini_batches,
            preprocess_processes=preprocess_processes,
            mini_batches_in_flight=in_flight,
            logging_level=logging_level,
            environment=environment,
            gpu=gpu,
            storage=storage,
            allow_reuse=bool(allow_reuse),
            retry_failed=retry_failed is True,
            queue_name=queue_name,
            priority_class_name=priority_class_name,
        )

    def input(self, value: Any) -> InputSpec | None:
        value = self.mapping("spec.input", value, ("uri", "manifest", "type", "format", "pattern", "options"),
                             required=True)
        if value is None:
            return None
        kind: InputType | None = self.choice("spec.input.type", value.get("type"), get_args(InputType), None)
        if value.get("type") is None:
            self.fail("spec.input.type",
                      "required; use tabular (rows of csv/parquet/jsonl) or files (one item per file)")
        fmt: InputFormat | None = self.choice("spec.input.format", value.get("format"), get_args(InputFormat), None)
        if kind == "tabular" and value.get("format") is None:
            self.fail("spec.input.format", "required with type: tabular; use parquet, csv or jsonl")
        if kind == "files" and value.get("format") is not None:
            self.fail("spec.input.format", "only a tabular input has a format; remove it or use type: tabular")
        options = value.get("options") or {}
        if not isinstance(options, dict):
            self.fail("spec.input.options", "expected a mapping of reader options, e.g. {delimiter: ';'}")
            options = {}
        self.column_types(options.get("columnTypes"))
        self.raw(options, fmt)
        if options.get("columnTypes") is not None and fmt not in ("csv", "jsonl"):
            self.fail("spec.input.options.columnTypes", "applies to csv and jsonl input only (a Parquet file has "
                      "its types); remove it")
        if value.get("uri") is None and value.get("manifest") is None:
            self.fail("spec.input.uri", "required; give input.uri (a folder or file) or input.manifest "
                      "(a text file listing the input files, one a line)")
        elif value.get("uri") is not None and value.get("manifest") is not None:
            self.fail("spec.input.manifest", "give either input.uri or input.manifest, not both")
        if value.get("manifest") is not None and value.get("pattern") is not None:
            self.fail("spec.input.pattern", "applies to input.uri only; a manifest lists exactly the files to take")
        return InputSpec(uri=self.uri("spec.input.uri", value.get("uri"), required=False), type=kind or "files",
                         format=fmt, pattern=self.string("spec.input.pattern", value.get("pattern")), options=options,
                         manifest=self.uri("spec.input.manifest", value.get("manifest"), required=False))

    def raw(self, options: dict, fmt: str | None) -> None:
        """`input.options.raw`: jsonl lines handed to run() as text (formats.raw_lines)."""
        raw = options.get("raw")
        if raw is None:
            return
        if not isinstance(raw, bool):
            self.fail("spec.input.options.raw", f"expected true or false, got {raw!r}")
        elif raw and fmt != "jsonl":
            self.fail("spec.input.options.raw", "applies to jsonl input only; remove it or use format: jsonl")
        elif raw and (options.get("columnTypes") is not None or options.get("columns") is not None):
            self.fail("spec.input.options.raw", "a raw line is one text column `line`; remove columnTypes "
                      "and columns, or raw")

    def openai_input(self, inp: InputSpec) -> InputSpec:
        """The builtin OpenAI scorer reads OpenAI Batch JSONL, each request line as text."""
        if inp.type != "tabular" or inp.format != "jsonl":
            self.fail("spec.input", "builtin: openai reads OpenAI Batch JSONL; use type: tabular, format: jsonl")
        elif inp.options.get("raw") is False:
            self.fail("spec.input.options.raw", "builtin: openai reads each request line as text; remove it")
        return dataclasses.replace(inp, options={**inp.options, "raw": True})

    def column_types(self, value: Any) -> None:
        """`input.options.columnTypes`: column name → one of the types a csv/jsonl column may be read as."""
        if value is None:
            return
        if not isinstance(value, dict):
            self.fail("spec.input.options.columnTypes",
                      "expected a mapping of column name to type, e.g. {code: string}")
            return
        for name, kind in value.items():
            if kind not in COLUMN_TYPES:
                self.fail(f"spec.input.options.columnTypes.{name}", f"{kind!r} is not a column type; use one of "
                          f"{', '.join(COLUMN_TYPES)}")

    def output(self, value: Any, mlflow_files: bool = False, openai: bool = False) -> OutputSpec | None:
        """`mlflow_files`: the MLflow scorer on a files input gives many rows per file by default;
        `openai`: the OpenAI scorer writes jsonl."""
        value = self.mapping("spec.output", value, ("uri", "action", "fileName", "format", "layout", "resultsPerItem"),
                             required=True)
        if value is None:
            return None
        file_name = self.string("spec.output.fileName", value.get("fileName"), default="parallel_run_step.txt")
        if file_name and ("/" in file_name or file_name.startswith(("_", "."))):
            self.fail("spec.output.fileName",
                      f"{file_name!r} must be a plain file name, not a path nor starting with _ or .")
        fmt: OutputFormat = self.choice("spec.output.format", value.get("format"), get_args(OutputFormat),
                                        "jsonl" if openai else "txt")
        if openai and fmt != "jsonl":
            self.fail("spec.output.format", f"builtin: openai writes OpenAI Batch output lines; use jsonl, not {fmt}")
        layout: OutputLayout = self.choice("spec.output.layout", value.get("layout"), get_args(OutputLayout), "file")
        if layout == "dataset" and fmt != "parquet":
            self.fail("spec.output.layout", "dataset (a folder of ordered parts) is for parquet output; "
                      "use format: parquet or layout: file")
        uri = self.uri("spec.output.uri", value.get("uri"))
        action: OutputAction = self.choice(
            "spec.output.action", value.get("action"), get_args(OutputAction), "appendRow")
        results_per_item: ResultsPerItem = self.choice(
            "spec.output.resultsPerItem", value.get("resultsPerItem"), get_args(ResultsPerItem),
            "many" if mlflow_files else "one")
        if uri is None:  # required: reported
            return None
        return OutputSpec(uri=uri, action=action, file_name=file_name, format=fmt, layout=layout,
                          results_per_item=results_per_item)

    def code(self, value: Any, model_given: bool = False) -> CodeSpec | None:
        if value is None and model_given:  # an MLflow model scores itself (mlflow_scorer.py)
            return CodeSpec(entry_script=MLFLOW_SCORER, builtin=True)
        if isinstance(value, dict) and value.get("builtin") is not None:
            return self.builtin(value)
        value = self.mapping("spec.code", value, ("uri", "configMap", "entryScript", "builtin", "openai"),
                             required=True)
        if value is None:
            return None
        if value.get("openai") is not None:
            self.fail("spec.code.openai", "applies to builtin: openai only; add builtin: openai, or remove it")
        if value.get("uri") is not None and value.get("configMap") is not None:
            self.fail("spec.code", "give either uri or configMap, not both")
        script = self.string("spec.code.entryScript", value.get("entryScript"), required=True)
        if script:
            self.entry_script(script, baked=value.get("uri") is None and value.get("configMap") is None)
        uri = self.uri("spec.code.uri", value.get("uri"), required=False)
        config_map = self.string("spec.code.configMap", value.get("configMap"))
        if script is None:  # required: reported
            return None
        return CodeSpec(entry_script=script, uri=uri, config_map=config_map)

    def builtin(self, value: dict) -> CodeSpec | None:
        """`code: {builtin: openai, openai: {...}}`: the runner's own scorer, with its settings."""
        if any(value.get(k) is not None for k in ("entryScript", "uri", "configMap")):
            self.fail("spec.code.builtin", "is the runner's own scorer; remove entryScript, uri and configMap")
        self.unknown("spec.code", {k: v for k, v in value.items() if k not in ("entryScript", "uri", "configMap")},
                     ("builtin", "openai"))
        if value["builtin"] not in BUILTINS:
            self.fail("spec.code.builtin", f"{value['builtin']!r} is not a builtin scorer; use one of "
                      f"{', '.join(BUILTINS)}, or give entryScript")
            return None
        path = "spec.code.openai"
        settings = self.mapping(path, value.get("openai"), _OPENAI_FIELDS)
        if settings is None:
            self.fail(path, "required with builtin: openai; give at least {endpoint: http://localhost:8000/v1}")
            return None
        endpoint = self.string(f"{path}.endpoint", settings.get("endpoint"), required=True)
        if endpoint is not None and not re.match(r"^https?://[^/]", endpoint):
            self.fail(f"{path}.endpoint", f"{endpoint!r} is not an http(s) URL; give the API's base URL, "
                      "e.g. http://localhost:8000/v1")
        key_env, key_secret = self.api_key(f"{path}.apiKey", settings.get("apiKey"))
        openai = OpenAISettings(
            endpoint=(endpoint or "").rstrip("/"), api_key_env=key_env, api_key_secret=key_secret,
            model=self.string(f"{path}.model", settings.get("model")),
            requests_per_minute=self.integer(f"{path}.requestsPerMinute", settings.get("requestsPerMinute"), None, 1),
            tokens_per_minute=self.integer(f"{path}.tokensPerMinute", settings.get("tokensPerMinute"), None, 1),
            request_timeout=self.integer(f"{path}.requestTimeout", settings.get("requestTimeout"), 600, 1),
            max_retries=self.integer(f"{path}.maxRetries", settings.get("maxRetries"), 8, 0))
        return CodeSpec(entry_script=OPENAI_SCORER, builtin=True, openai=openai)

    def api_key(self, path: str, value: Any) -> tuple[str | None, tuple[str, str] | None]:
        """(variable, None) for {env: NAME}; (None, (secret, key)) for {secretKeyRef: {name, key}}."""
        value = self.mapping(path, value, ("env", "secretKeyRef"))
        if value is None:
            return None, None
        if (value.get("env") is None) == (value.get("secretKeyRef") is None):
            self.fail(path, "give either env (the variable that holds the key) or secretKeyRef: {name, key} "
                      "(a Secret, on a cluster)")
            return None, None
        if value.get("env") is not None:
            name = self.string(f"{path}.env", value["env"])
            if name is not None and not _NAME.match(name):
                self.fail(f"{path}.env", f"{name!r} is not a variable name; use letters, digits and _, "
                          "e.g. OPENAI_API_KEY")
            return name, None
        ref = self.mapping(f"{path}.secretKeyRef", value["secretKeyRef"], ("name", "key")) or {}
        secret = self.object_name(f"{path}.secretKeyRef.name", ref.get("name"), "a Secret of this namespace")
        key = self.string(f"{path}.secretKeyRef.key", ref.get("key"), required=True)
        if secret is None and "name" not in ref:
            self.fail(f"{path}.secretKeyRef.name", "required; the Secret that holds the key")
        return None, (secret, key) if secret and key else None

    def entry_script(self, script: str, baked: bool) -> None:
        """The script stays inside its code folder; only code baked into the image may name an absolute path."""
        if not script.endswith(".py"):
            self.fail("spec.code.entryScript", f"{script!r} is not a Python file; name the .py file that defines "
                      "init() and run(mini_batch)")
        if ".." in script.replace("\\", "/").split("/"):
            self.fail("spec.code.entryScript",
                      f"{script!r} leaves the code folder; give a path inside it, e.g. score.py")
        elif os.path.isabs(script) and not baked:
            self.fail("spec.code.entryScript", f"{script!r} is absolute; give a path relative to the code folder "
                      "(an absolute path is only for code baked into the image, with neither uri nor configMap)")

    def mini_batch_size(self, value: Any, inp: InputSpec | None) -> MiniBatchSize:
        files = inp is None or inp.type == "files"
        if value is None:
            return MiniBatchSize("count", 1, 1) if files else MiniBatchSize("bytes", 10**6, "1MB")
        if isinstance(value, int) and not isinstance(value, bool):
            if value >= 1:
                return MiniBatchSize("count" if files else "rows", value, value)
            self.fail("spec.miniBatchSize", f"{value} must be at least 1")
        elif isinstance(value, str) and _SIZE.match(value.strip()):
            if files:
                self.fail("spec.miniBatchSize",
                          f"{value!r} is a size, but a files input is batched by count; use an integer such as 5")
            elif parse_size(value) < 1:
                self.fail("spec.miniBatchSize", f"{value!r} is empty; use a size of at least 1 byte, e.g. \"1MB\"")
            else:
                return MiniBatchSize("bytes", parse_size(value), value)
        else:
            self.fail("spec.miniBatchSize", f"{value!r} is not a size; use an integer or a value like \"1MB\"")
        return MiniBatchSize("count", 1, 1)

    def side_inputs(self, value: Any) -> tuple[SideInput, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("spec.sideInputs", "expected a list of {name, uri}")
            return ()
        result, seen = [], set()
        for i, item in enumerate(value):
            path = f"spec.sideInputs[{i}]"
            item = self.mapping(path, item, ("name", "uri"), required=True) or {}
            name = self.string(f"{path}.name", item.get("name"), required=True)
            if name and not _NAME.match(name):
                self.fail(f"{path}.name",
                          f"{name!r} must be a letter or _ followed by letters, digits or _ (it names an env var)")
            if name in seen:
                self.fail(f"{path}.name", f"{name!r} is given twice")
            seen.add(name)
            uri = self.uri(f"{path}.uri", item.get("uri"))
            if name and uri:
                result.append(SideInput(name, uri))
        return tuple(result)

    def gpu(self, value: Any) -> GpuSpec | None:
        if value is None:
            return None
        value = self.mapping("spec.environment.gpu", value, ("count", "resourceName", "product")) or {}
        count = self.integer("spec.environment.gpu.count", value.get("count"), None, 1)
        if "count" not in value:
            self.fail("spec.environment.gpu.count", "required; the number of GPUs per pod, e.g. 1")
        return GpuSpec(count=count or 1,
                       resource_name=self.string("spec.environment.gpu.resourceName", value.get("resourceName"),
                                                 default="nvidia.com/gpu"),
                       product=self.string("spec.environment.gpu.product", value.get("product")))
