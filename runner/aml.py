"""Azure ML v2 parallel jobs as our resources: `type: parallel` → BatchInferenceJob,
an AML pipeline's `type: parallel` jobs → PipelineRun steps.

The conversion is plain data to plain data; `parallelrun convert` prints it, `run` and
`validate` load what it gives. Relative paths stay relative to the AML file's folder,
as AML takes them (an MLTable's paths: to the MLTable's folder). What has no equivalent
here (`compute`, `azureml:` assets, AML's environments, mount modes) is named once in
`Conversion.ignored`, not an error; what we cannot do without (the data to score, the
entry script) is a `AmlSpecError` naming the field and the fix.

Decisions the issue leaves open:

- The script's `sys.argv` holds AML's own arguments first (`--scoring_module_name`,
  `--mini_batch_size`, `--logging_level`, ...), then `program_arguments` with their
  `${{inputs.X}}`/`${{outputs.Y}}` replaced by paths (a local one made absolute):
  scripts written for AML read theirs with `parse_known_args`.
- `--allowed_failed_percent`, `--error_threshold`, `--mini_batch_error_threshold`,
  `--run_invocation_timeout`, `--run_max_try` and `--process_count_per_node` in
  `program_arguments` set the matching field, as AML's driver reads them; its other
  tuning arguments are ignored (and stay in sys.argv).
- `append_row_to` writes AML's space-separated rows (`format: txt`) whatever the file's
  extension, as AML does. A `uri_file` output names the file; a `uri_folder` output is
  the folder, the file `parallel_run_step.txt`. An output without a usable path goes to
  `outputs/<job>/<output>/` beside the AML file (AML: `azureml/<job>/<output>/` on the
  workspace datastore); in a pipeline, to `${{run.workdir}}/<step>/<output>/`.
- `mini_batch_size` of tabular data: AML's `kb`/`mb`/`gb` are binary units; a bare
  number is bytes. Of files: a count.
- `max_concurrency_per_instance` defaults to 1 as on AML (ours would take every CPU).
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .api import API_VERSION, BATCH_INFERENCE_JOB, PIPELINE_RUN
from .contract import URI_SCHEME
from .pipelines.uris import join_uri
from .spec import JobSpec, SpecError, apply_override, load_spec, load_spec_file, read_yaml

_EXPRESSION = re.compile(r"\$\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_AML_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?b?)\s*$", re.IGNORECASE)
_BINARY = {"": "B", "b": "B", "k": "KiB", "kb": "KiB", "m": "MiB", "mb": "MiB", "g": "GiB", "gb": "GiB",
           "t": "TiB", "tb": "TiB"}

# Fields of a parallel job, and what becomes of each (those absent here are unknown).
_JOB_FIELDS = ("$schema", "type", "name", "display_name", "description", "tags", "experiment_name", "compute",
               "inputs", "outputs", "input_data", "mini_batch_size", "partition_keys", "resources",
               "max_concurrency_per_instance", "mini_batch_error_threshold", "error_threshold", "logging_level",
               "retry_settings", "environment_variables", "task", "identity", "properties", "is_deterministic",
               "component", "services")
_IGNORED = {  # field → why it has no equivalent
    "compute": "the cluster is where the operator runs; nodes come from resources.instance_count",
    "identity": "storage credentials come from spec.storage.secretRef",
    "experiment_name": "runs are named by the job",
    "tags": "use metadata.labels",
    "properties": "no equivalent",
    "services": "no equivalent",
    "is_deterministic": "reuse is spec.allowReuse",
    "description": "no equivalent",
}
_MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model")
_LITERAL_TYPES = ("string", "integer", "number", "boolean")
_TASK_FIELDS = ("type", "code", "entry_script", "program_arguments", "append_row_to", "environment", "model")
_RESOURCE_FIELDS = ("instance_count", "instance_type", "shm_size", "properties", "docker_args")
# AML driver arguments that set a field of ours, as AML's driver reads them from program_arguments.
_DRIVER_ARGUMENTS = {
    "--allowed_failed_percent": "allowedFailedPercent", "--error_threshold": "errorThreshold",
    "--mini_batch_error_threshold": "miniBatchErrorThreshold", "--run_invocation_timeout": "runInvocationTimeout",
    "--run_max_try": "runMaxTry", "--process_count_per_node": "processCountPerNode",
}
_DRIVER_TUNING = ("--task_overhead_timeout", "--progress_update_timeout", "--first_task_creation_timeout",
                  "--resource_monitor_interval", "--copy_logs_to_parent", "--append_row_dataset_name",
                  "--save_mini_batch_results", "--enable_node_health_check")
_MLTABLE_ENCODINGS = {"utf8": "utf8", "ascii": "ascii", "latin1": "latin1", "iso88591": "latin1",
                      "utf16": "utf16", "windows1252": "cp1252"}


class AmlSpecError(SpecError):
    """An Azure ML job that cannot be converted; `.errors` has one "path: problem; fix" line each."""

    what = "Azure ML job"


@dataclass
class Conversion:
    """The resource an AML file becomes, and what of it was ignored ("path: why" each)."""

    resource: dict
    ignored: list[str] = field(default_factory=list)


def is_aml_job(doc: Any) -> bool:
    """An AML v2 parallel job or pipeline job (they have `type`, our resources `kind`)."""
    return isinstance(doc, dict) and "kind" not in doc and doc.get("type") in ("parallel", "pipeline")


def convert_file(path: str) -> Conversion:
    """Convert an AML v2 YAML file: a parallel job or a pipeline job with parallel jobs."""
    return convert(read_yaml(path, AmlSpecError), os.path.dirname(os.path.abspath(path)),
                   os.path.splitext(os.path.basename(path))[0])


def convert(doc: Any, base_dir: str, default_name: str = "job") -> Conversion:
    if not is_aml_job(doc):
        raise AmlSpecError(["type: expected an Azure ML job with type: parallel or type: pipeline"])
    converter = _Converter(base_dir)
    if doc["type"] == "pipeline":
        resource = converter.pipeline(doc, default_name)
    else:
        resource = {"apiVersion": API_VERSION, "kind": BATCH_INFERENCE_JOB.kind,
                    "metadata": {"name": _dns_name(doc.get("name") or doc.get("display_name") or default_name)},
                    "spec": converter.job(doc, "", None)}
    if converter.errors:
        raise AmlSpecError(converter.errors)
    return Conversion(resource, converter.ignored)


def _dns_name(text: str, label: bool = False) -> str:
    """A Kubernetes name from an AML name ("Iris batch_prediction" → "iris-batch-prediction")."""
    name = re.sub(r"[^a-z0-9.-]+" if not label else r"[^a-z0-9-]+", "-", str(text).lower()).strip("-.")
    return name[:63 if label else 253].rstrip("-.") or "job"


def _is_asset(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("azureml:")


def _size(text: str) -> str | None:
    """AML's tabular mini_batch_size ("10kb", "100 mb", "1024") as ours ("10KiB", "1024B")."""
    match = _AML_SIZE.match(str(text))
    if not match:
        return None
    number = match.group(1).removesuffix(".0")
    return f"{number}{_BINARY[match.group(2).lower()]}"


@dataclass
class _Data:
    """A data input or output as AML declares it; `path` as written, None where not given."""

    type: str
    path: str | None
    is_asset: bool = False
    step: str | None = None  # the pipeline step that writes it


class _Converter:
    def __init__(self, base_dir: str):
        self.base_dir = base_dir
        self.errors: list[str] = []
        self.ignored: list[str] = []
        self.needs: set[str] = set()  # the steps the job being converted reads from

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def ignore(self, path: str, why: str) -> None:
        entry = f"{path}: {why}"
        if entry not in self.ignored:
            self.ignored.append(entry)

    def local(self, path: str) -> str:
        """A path as the script sees it: a local one absolute (the script runs elsewhere), a URL as it is."""
        if URI_SCHEME.match(path) or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(self.base_dir, path)) + ("/" if path.endswith("/") else "")

    # -- a parallel job ----------------------------------------------------------

    def job(self, doc: dict, prefix: str, bindings: dict | None) -> dict:
        """The BatchInferenceJob spec of one parallel job. `prefix` is its path in the file
        ("jobs.score." in a pipeline); `bindings` resolve its `${{parent...}}` references
        (a pipeline's inputs, other steps' outputs)."""
        for key in doc:
            if key not in _JOB_FIELDS:
                self.fail(f"{prefix}{key}", "unknown field of a parallel job; see Azure ML's parallel job YAML "
                          "schema (docs/from-azure-ml.md lists every field)")
            elif key in _IGNORED:
                self.ignore(f"{prefix}{key}", _IGNORED[key])
        if doc.get("component") is not None:
            self.fail(f"{prefix}component", "a parallel component file is not converted; put its fields in the "
                      "job (task, input_data, mini_batch_size, ...)")
        name = _dns_name(doc.get("name") or doc.get("display_name") or "job")
        inputs = self.inputs(doc.get("inputs"), prefix, bindings)
        outputs = self.outputs(doc.get("outputs"), prefix, name, bindings)
        task = doc.get("task")
        if not isinstance(task, dict):
            self.fail(f"{prefix}task", "required: give {type: run_function, code: ..., entry_script: score.py}")
            task = {}
        spec: dict[str, Any] = {}
        self.input_data(doc, prefix, inputs, spec)
        self.model(inputs, prefix, spec)
        self.task(task, prefix, spec)
        self.output(task.get("append_row_to"), f"{prefix}task.append_row_to", outputs, spec)
        self.settings(doc, prefix, spec)
        arguments = self.program_arguments(task.get("program_arguments"), f"{prefix}task.program_arguments",
                                           inputs, outputs, spec)
        spec["arguments"] = self.driver_arguments(spec, doc.get("mini_batch_size")) + arguments
        return spec

    def inputs(self, value: Any, prefix: str, bindings: dict | None) -> dict[str, Any]:
        """Each input as a _Data (data) or its literal value (a string, a number)."""
        result: dict[str, Any] = {}
        for name, item in self.named(value, f"{prefix}inputs").items():
            path = f"{prefix}inputs.{name}"
            if isinstance(item, dict):
                self.data_fields(item, path, ("type", "path", "description", "optional", "default"))
                bound = self.bound(item.get("path", item.get("default")), f"{path}.path", bindings)
                kind = item.get("type")
                if isinstance(bound, _Data):
                    result[name] = _Data(kind or bound.type, bound.path, bound.is_asset, bound.step)
                elif kind in _LITERAL_TYPES:
                    result[name] = bound
                else:
                    result[name] = _Data(kind or "uri_folder", bound, _is_asset(bound))
            else:
                result[name] = self.bound(item, path, bindings)
        return result

    def named(self, value: Any, path: str) -> dict:
        """A mapping of names to inputs or outputs ({} where absent or not a mapping, reported)."""
        if value is not None and not isinstance(value, dict):
            self.fail(path, "expected a mapping of names to {type: ..., path: ...}")
        return value if isinstance(value, dict) else {}

    def data_fields(self, item: dict, path: str, known: tuple[str, ...]) -> None:
        for key in item:
            if key == "mode":
                self.ignore(f"{path}.mode", "data is read and written where it is (fsspec), not mounted")
            elif key not in known:
                self.fail(f"{path}.{key}", "unknown field; known: " + ", ".join((*known, "mode")))

    def bound(self, value: Any, path: str, bindings: dict | None) -> Any:
        """A value with its `${{parent...}}` reference resolved through `bindings`."""
        if not isinstance(value, str) or "${{" not in value:
            return value
        match = _EXPRESSION.fullmatch(value.strip())
        if bindings is None or not match or not match.group(1).startswith("parent."):
            self.fail(path, f"{value!r}: only a whole ${{{{parent.inputs.X}}}} or "
                      "${{parent.jobs.J.outputs.Y}} can be bound here")
            return None
        ref = match.group(1).removeprefix("parent.")
        if ref not in bindings:
            self.fail(path, f"{value!r} names nothing; known: " + ", ".join(f"parent.{k}" for k in bindings))
            return None
        if isinstance(bindings[ref], _Data) and bindings[ref].step:
            self.needs.add(bindings[ref].step)
        return bindings[ref]

    def outputs(self, value: Any, prefix: str, job: str, bindings: dict | None) -> dict[str, _Data]:
        result: dict[str, _Data] = {}
        for name, item in self.named(value, f"{prefix}outputs").items():
            path = f"{prefix}outputs.{name}"
            if isinstance(item, str):  # a pipeline's binding: ${{parent.outputs.X}}
                bound = self.bound(item, path, bindings)
                item = {"type": bound.type, "path": bound.path} if isinstance(bound, _Data) else {}
            item = item or {}
            if not isinstance(item, dict):
                self.fail(path, "expected {type: uri_folder|uri_file, path: ...} or nothing")
                continue
            self.data_fields(item, path, ("type", "path", "description"))
            kind = item.get("type", "uri_folder")
            where = item.get("path")
            if where is not None and (not isinstance(where, str) or where.startswith("azureml:") or "${{" in where):
                self.ignore(f"{path}.path", f"{where!r} is on an Azure ML datastore; written to the default "
                            "place instead (give a local path or an fsspec URL such as az://container/folder/)")
                where = None
            if where is None:
                default = f"outputs/{job}/{name}/"
                where = default if bindings is None else f"${{{{run.workdir}}}}/{job}/{name}/"
                if kind == "uri_file":
                    where += "parallel_run_step.txt"
            result[name] = _Data(kind, where)
        return result

    def input_data(self, doc: dict, prefix: str, inputs: dict[str, Any], spec: dict) -> None:
        ref = doc.get("input_data")
        match = _EXPRESSION.fullmatch(str(ref).strip()) if ref is not None else None
        name = match.group(1).removeprefix("inputs.") if match and match.group(1).startswith("inputs.") else None
        if ref is None:
            self.fail(f"{prefix}input_data", "required: the input to split into mini-batches, e.g. "
                      "${{inputs.job_data_path}}")
            return
        if name not in inputs or not isinstance(inputs[name], _Data):
            self.fail(f"{prefix}input_data", f"{ref!r} names no data input; use ${{{{inputs.NAME}}}} of an input "
                      "with type uri_folder, uri_file or mltable")
            return
        data: _Data = inputs[name]
        path = f"{prefix}inputs.{name}.path"
        if data.path is None or data.is_asset:
            self.fail(path, f"{data.path!r} is an Azure ML data asset; give a local path or an fsspec URL "
                      "(az://container/folder/, s3://...), or --set input.uri=...")
            return
        if data.type in ("uri_folder", "uri_file"):
            spec["input"] = {"uri": data.path, "type": "files"}
        elif data.type == "mltable" and "${{" in data.path:
            self.fail(path, "an mltable made by another job is only known when that job ran; declare that "
                      "job's output as uri_folder and this input as uri_folder (files), or point at an MLTable")
            return
        elif data.type == "mltable":
            spec["input"] = self.mltable(data.path, path)
        else:
            self.fail(f"{prefix}inputs.{name}.type", f"{data.type!r} cannot be split into mini-batches; use "
                      "uri_folder, uri_file or mltable")
            return
        if doc.get("partition_keys") is not None:
            spec["partitionKeys"] = doc["partition_keys"]
            if spec["input"]["type"] != "tabular":
                self.fail(f"{prefix}partition_keys", "needs a tabular mltable input (with read_delimited, "
                          "read_parquet or read_json_lines)")
        size = doc.get("mini_batch_size")
        if size is None:
            return
        if spec["input"]["type"] == "files":
            count = int(size) if str(size).strip().isdigit() else None
            if not count:
                self.fail(f"{prefix}mini_batch_size", f"{size!r} is not a count of files; use an integer "
                          "such as \"10\"")
            else:
                spec["miniBatchSize"] = count
        elif (ours := _size(size)) is not None:
            spec["miniBatchSize"] = ours
        else:
            self.fail(f"{prefix}mini_batch_size", f"{size!r} is not a size; use a value like \"100kb\" or \"10mb\"")

    def model(self, inputs: dict[str, Any], prefix: str, spec: dict) -> None:
        """The first model input (custom_model, mlflow_model, triton_model) is spec.model: fetched
        once per pod, its folder in PARALLELRUN_MODEL_DIR and AZUREML_MODEL_DIR."""
        models = [(name, d) for name, d in inputs.items() if isinstance(d, _Data) and d.type in _MODEL_TYPES]
        for name, data in models[:1]:
            if data.path is None or data.is_asset:
                self.fail(f"{prefix}inputs.{name}.path", f"{data.path!r} is an Azure ML model asset; give the "
                          "model's folder as a local path or an fsspec URL")
            else:
                spec["model"] = {"uri": data.path}
        for name, _ in models[1:]:
            self.ignore(f"{prefix}inputs.{name}", "one model is fetched per pod (the first); this one reaches "
                        "the script only through program_arguments")

    def mltable(self, where: str, path: str) -> dict:
        """The input an MLTable folder (or file) describes: its one path and its read transformation."""
        import fsspec
        import yaml

        folder = where.rstrip("/") if not where.endswith("MLTable") else posixpath.dirname(where)
        location = folder if URI_SCHEME.match(folder) else os.path.join(self.base_dir, folder)
        try:
            with fsspec.open(f"{location}/MLTable", "r", encoding="utf-8") as f:
                table = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            self.fail(path, f"cannot read {location}/MLTable ({e}); give the folder that holds the MLTable file")
            return {"uri": folder, "type": "files"}
        if not isinstance(table, dict):
            self.fail(path, f"{location}/MLTable is not a mapping")
            return {"uri": folder, "type": "files"}
        paths = table.get("paths") or []
        if len(paths) != 1 or not isinstance(paths[0], dict) or len(paths[0]) != 1:
            self.fail(f"{path} (MLTable paths)", "give exactly one entry, {file: ...}, {folder: ...} or "
                      "{pattern: ...}; several sources are a manifest (spec.input.manifest) here")
            return {"uri": folder, "type": "files"}
        (kind, target), = paths[0].items()
        target = str(target)
        if target.startswith("azureml:"):
            self.fail(f"{path} (MLTable paths)", f"{target!r} is on an Azure ML datastore; give a path relative "
                      "to the MLTable file or an fsspec URL")
        joined = join_uri(folder, target).rstrip("/")
        result: dict[str, Any] = {"type": "files"}
        if kind == "pattern":
            base, _, _glob = joined.partition("*")
            root = base.rsplit("/", 1)[0] if "/" in base else "."
            result["uri"], result["pattern"] = root + "/", joined[len(root) + 1:]
        elif kind in ("file", "folder"):
            result["uri"] = joined + ("/" if kind == "folder" else "")
        else:
            self.fail(f"{path} (MLTable paths)", f"{kind!r} is not file, folder or pattern")
        for step in table.get("transformations") or []:
            (name, options), = (step.items() if isinstance(step, dict) else [(step, {})])
            if name in ("read_delimited", "read_parquet", "read_json_lines"):
                result["format"] = {"read_delimited": "csv", "read_parquet": "parquet",
                                    "read_json_lines": "jsonl"}[name]
                result["type"] = "tabular"
                if name == "read_delimited":
                    result["options"] = self.delimited(options or {}, path)
            else:
                self.ignore(f"{path} (MLTable transformations.{name})", "only the read transformation is applied")
        return result

    def delimited(self, options: dict, path: str) -> dict:
        ours: dict[str, Any] = {}
        for key, value in options.items():
            if key == "delimiter":
                ours["delimiter"] = value
            elif key == "header":
                if value == "no_header":
                    ours["header"] = False
            elif key == "encoding" and str(value).lower().replace("-", "") in _MLTABLE_ENCODINGS:
                ours["encoding"] = _MLTABLE_ENCODINGS[str(value).lower().replace("-", "")]
            elif key == "support_multi_line":
                ours["newlinesInValues"] = bool(value)
            else:
                self.ignore(f"{path} (MLTable read_delimited.{key})", "no equivalent; columns are read as "
                            "pyarrow infers them")
        return ours

    def task(self, task: dict, prefix: str, spec: dict) -> None:
        for key in task:
            if key not in _TASK_FIELDS:
                self.fail(f"{prefix}task.{key}", "unknown field of a parallel task; known: " + ", ".join(_TASK_FIELDS))
        if task.get("type", "run_function") != "run_function":
            self.fail(f"{prefix}task.type", f"{task.get('type')!r} is not converted; use run_function")
        if task.get("environment") is not None:
            self.ignore(f"{prefix}task.environment", "local mode runs in this Python environment; on Kubernetes "
                        "set spec.environment.image to an image with parallelrun and the script's packages")
        if task.get("model") is not None:
            self.ignore(f"{prefix}task.model", "pass the model as an input in program_arguments")
        code = task.get("code", ".")
        if _is_asset(code):
            self.fail(f"{prefix}task.code", f"{code!r} is an Azure ML asset; give the folder of the entry script")
        script = task.get("entry_script")
        if script is None and "model" in spec:  # an MLflow model input scores itself (runner/mlflow_scorer.py)
            return
        if not isinstance(script, str) or not script:
            self.fail(f"{prefix}task.entry_script", "required: the .py file with init() and run(mini_batch), or "
                      "none with an mlflow_model input")
            return
        spec["code"] = {"uri": code, "entryScript": script}

    def output(self, ref: Any, path: str, outputs: dict[str, _Data], spec: dict) -> None:
        if ref is None:
            spec["output"] = {"uri": self.summary_folder(outputs), "action": "summaryOnly"}
            return
        match = _EXPRESSION.fullmatch(str(ref).strip().split("/")[0]) if isinstance(ref, str) else None
        name = match.group(1).removeprefix("outputs.") if match and match.group(1).startswith("outputs.") else None
        if match is None or name not in outputs:
            self.fail(path, f"{ref!r} names no output; use ${{{{outputs.NAME}}}} of an output of the job")
            spec["output"] = {"uri": "outputs/"}
            return
        data = outputs[name]
        assert data.path is not None  # outputs() gives every output a place
        tail = str(ref).strip()[len(match.group(0)):].lstrip("/")  # ${{outputs.x}}/predictions.csv
        if data.type == "uri_file" and not tail:
            folder, file_name = posixpath.split(data.path)
            spec["output"] = {"uri": (folder or ".") + "/", "fileName": file_name, "format": "txt"}
        else:
            spec["output"] = {"uri": data.path.rstrip("/") + "/", "fileName": tail or "parallel_run_step.txt",
                              "format": "txt"}

    def summary_folder(self, outputs: dict[str, _Data]) -> str:
        """Where a job without append_row_to keeps its summary: its first folder output, or the default."""
        folders = [d.path for d in outputs.values() if d.type == "uri_folder" and d.path is not None]
        return folders[0] if folders else "outputs/"

    def settings(self, doc: dict, prefix: str, spec: dict) -> None:
        resources = doc.get("resources") or {}
        if not isinstance(resources, dict):
            self.fail(f"{prefix}resources", "expected {instance_count: N}")
            resources = {}
        for key in resources:
            if key not in _RESOURCE_FIELDS:
                self.fail(f"{prefix}resources.{key}", "unknown field; known: " + ", ".join(_RESOURCE_FIELDS))
            elif key != "instance_count":
                self.ignore(f"{prefix}resources.{key}", "pod resources are spec.environment.resources")
        if resources.get("instance_count") is not None:
            spec["nodeCount"] = resources["instance_count"]
        spec["processCountPerNode"] = doc.get("max_concurrency_per_instance", 1)
        for aml, ours in (("error_threshold", "errorThreshold"), ("mini_batch_error_threshold",
                                                                  "miniBatchErrorThreshold")):
            if doc.get(aml) is not None:
                spec[ours] = doc[aml]
        if doc.get("logging_level") is not None:
            spec["loggingLevel"] = str(doc["logging_level"]).upper()
        retry = doc.get("retry_settings") or {}
        if not isinstance(retry, dict):
            self.fail(f"{prefix}retry_settings", "expected {max_retries: N, timeout: SECONDS}")
            retry = {}
        for key in retry:
            if key not in ("max_retries", "timeout"):
                self.fail(f"{prefix}retry_settings.{key}", "unknown field; known: max_retries, timeout")
        retries = retry.get("max_retries")
        if retries is not None:
            if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0:
                spec["runMaxTry"] = retries + 1
            else:
                self.fail(f"{prefix}retry_settings.max_retries", f"{retries!r} is not a count; use 0 or more")
        if retry.get("timeout") is not None:
            spec["runInvocationTimeout"] = retry["timeout"]
        variables = doc.get("environment_variables") or {}
        if not isinstance(variables, dict):
            self.fail(f"{prefix}environment_variables", "expected a mapping of names to values")
            variables = {}
        if variables:
            spec["environment"] = {"env": [{"name": str(k), "value": str(v)} for k, v in variables.items()]}

    def program_arguments(self, value: Any, path: str, inputs: dict, outputs: dict[str, _Data],
                          spec: dict) -> list[str]:
        """The arguments with inputs and outputs in place; AML driver arguments set their field."""
        if value is None:
            return []
        text = " ".join(value) if isinstance(value, list) else str(value)

        def path_of(match: re.Match) -> str:
            ref = match.group(1)
            scope, _, name = ref.partition(".")
            source = inputs if scope == "inputs" else outputs if scope == "outputs" else {}
            if name not in source:
                self.fail(path, f"${{{{{ref}}}}} names nothing; known: "
                          + ", ".join([f"inputs.{k}" for k in inputs] + [f"outputs.{k}" for k in outputs]))
                return ""
            item = source[name]
            if not isinstance(item, _Data):
                return str(item)
            if item.is_asset or item.path is None:
                self.ignore(f"{path} ({ref})", f"{item.path!r} is an Azure ML asset; passed to the script as written")
                return str(item.path)
            if "${{" in item.path:  # a pipeline's run folder: only known when the step starts
                return item.path
            if URI_SCHEME.match(item.path) and not item.path.startswith("file://"):
                self.ignore(f"{path} ({ref})", f"{item.path} is passed as its URL, not mounted: the script "
                            "opens it with fsspec")
            return self.local(item.path)

        words = shlex.split(_EXPRESSION.sub(lambda m: shlex.quote(path_of(m)), text))
        for i, word in enumerate(words):
            flag, eq, inline = word.partition("=")
            if flag in _DRIVER_ARGUMENTS:
                raw = inline if eq else (words[i + 1] if i + 1 < len(words) else "")
                try:
                    spec[_DRIVER_ARGUMENTS[flag]] = int(float(raw))
                except ValueError:
                    self.fail(path, f"{flag} {raw!r}: expected a number")
            elif flag in _DRIVER_TUNING:
                self.ignore(f"{path} ({flag})", "an AML driver setting with no equivalent; it stays in sys.argv")
        return words

    def driver_arguments(self, spec: dict, mini_batch_size: Any) -> list[str]:
        """AML's own arguments, as its driver puts them in the entry script's sys.argv."""
        output = spec.get("output", {})
        arguments = {
            "--scoring_module_name": spec.get("code", {}).get("entryScript"),
            "--mini_batch_size": mini_batch_size,
            "--error_threshold": spec.get("errorThreshold", -1),
            "--mini_batch_error_threshold": spec.get("miniBatchErrorThreshold", -1),
            "--output_action": "summary_only" if output.get("action") == "summaryOnly" else "append_row",
            "--append_row_file_name": output.get("fileName") if output.get("action") != "summaryOnly" else None,
            "--logging_level": spec.get("loggingLevel", "INFO"),
            "--run_invocation_timeout": spec.get("runInvocationTimeout", 60),
            "--run_max_try": spec.get("runMaxTry", 3),
            "--process_count_per_node": spec.get("processCountPerNode"),
            "--node_count": spec.get("nodeCount", 1),
            "--partition_keys": ",".join(spec["partitionKeys"]) if spec.get("partitionKeys") else None,
        }
        return [word for key, value in arguments.items() if value is not None for word in (key, str(value))]

    # -- a pipeline job ------------------------------------------------------------

    def pipeline(self, doc: dict, default_name: str) -> dict:
        """A PipelineRun whose steps are the pipeline's jobs, in the file's order: a parallel job
        a batchInference step, a command job with a component file a component step."""
        for key in doc:
            if key in ("settings", "compute", "experiment_name", "tags", "description", "identity", "properties"):
                self.ignore(key, _IGNORED.get(key, "the cluster and its defaults are the operator's"))
            elif key not in ("$schema", "type", "name", "display_name", "inputs", "outputs", "jobs"):
                self.fail(key, "unknown field of a pipeline job")
        jobs = doc.get("jobs")
        if not isinstance(jobs, dict) or not jobs:
            self.fail("jobs", "required: the pipeline's jobs, at least one of type: parallel")
            jobs = {}
        bindings = self.pipeline_bindings(doc, jobs)
        steps = []
        for name, job in jobs.items():
            prefix, step = f"jobs.{name}.", _dns_name(name, label=True)
            kind = job.get("type") if isinstance(job, dict) else None
            self.needs = set()
            if kind == "parallel":
                entry = {"name": step, "batchInference": self.job({**job, "name": step}, prefix, bindings)}
            elif kind == "command" and isinstance(job.get("component"), str):
                entry = {"name": step, **self.command_step(job, prefix, bindings)}
            else:
                self.fail(f"{prefix}type", f"{kind!r} jobs are not converted; a parallel job becomes a "
                          "batchInference step and a command job with a component file a component step; write "
                          "this one as a container or component step of the PipelineRun")
                continue
            if self.needs:
                entry["dependsOn"] = sorted(self.needs)
            steps.append(entry)
        name = _dns_name(doc.get("name") or doc.get("display_name") or default_name)
        return {"apiVersion": API_VERSION, "kind": PIPELINE_RUN.kind, "metadata": {"name": name},
                "spec": {"workdir": "outputs/", "steps": steps}}

    def pipeline_bindings(self, doc: dict, jobs: dict) -> dict[str, Any]:
        """What `${{parent.inputs.X}}`, `${{parent.outputs.Y}}` and `${{parent.jobs.J.outputs.Y}}` stand for."""
        bindings: dict[str, Any] = {}
        for name, item in (doc.get("inputs") or {}).items():
            if isinstance(item, dict) and item.get("type") not in _LITERAL_TYPES:
                bindings[f"inputs.{name}"] = _Data(item.get("type", "uri_folder"), item.get("path"),
                                                   _is_asset(item.get("path")))
            else:
                bindings[f"inputs.{name}"] = item.get("default") if isinstance(item, dict) else item
        for name, item in (doc.get("outputs") or {}).items():
            item = item if isinstance(item, dict) else {}
            bindings[f"outputs.{name}"] = _Data(item.get("type", "uri_folder"), item.get("path"))
        for job_name, job in jobs.items():
            if not isinstance(job, dict):
                continue
            step = _dns_name(job_name, label=True)
            outputs = {k: (v or {}).get("type", "uri_folder") if isinstance(v, dict) or v is None else "uri_folder"
                       for k, v in (job.get("outputs") or {}).items()}
            if job.get("type") == "command" and isinstance(job.get("component"), str):
                outputs = {**self.component_outputs(job["component"]), **outputs}
            appended = str((job.get("task") or {}).get("append_row_to") or "")
            for output, kind in outputs.items():
                if job.get("type") != "parallel":
                    ref = output
                elif f"outputs.{output}" in appended:  # its appendRow output: the step's own
                    ref = "outputFile" if kind == "uri_file" and appended.strip().endswith("}}") else "output"
                else:  # another folder the script writes: where the job puts it
                    ref = None
                where = (f"${{{{steps.{step}.outputs.{ref}}}}}" if ref else
                         f"${{{{run.workdir}}}}/{step}/{output}/" + ("parallel_run_step.txt" if kind == "uri_file"
                                                                     else ""))
                bindings[f"jobs.{job_name}.outputs.{output}"] = _Data(kind, where, step=step)
        return bindings

    def component_outputs(self, path: str) -> dict[str, str]:
        """The outputs a command component file declares (name → type), where it can be read here."""
        try:
            component = read_yaml(os.path.join(self.base_dir, path), AmlSpecError)
        except AmlSpecError:
            return {}  # the PipelineRun's loader says what is wrong with it
        outputs = component.get("outputs") if isinstance(component, dict) else None
        return {k: (v or {}).get("type", "uri_folder") for k, v in outputs.items()
                if isinstance(v, dict) or v is None} if isinstance(outputs, dict) else {}

    def command_step(self, job: dict, prefix: str, bindings: dict) -> dict:
        """A command job with a component file: a component step, its inputs bound."""
        for key in job:
            if key in ("compute", "environment", "resources", "identity", "distribution", "limits"):
                self.ignore(f"{prefix}{key}", "the component file's environment runs the step")
            elif key == "outputs":
                self.ignore(f"{prefix}outputs", "a component step's outputs go to ${{run.workdir}}/<step>/<output>/")
            elif key not in ("type", "component", "inputs", "display_name", "description", "tags", "name"):
                self.fail(f"{prefix}{key}", "unknown field of a command job with a component")
        inputs = {}
        for name, value in (job.get("inputs") or {}).items():
            if isinstance(value, dict):
                value = value.get("path", value.get("default"))
            value = self.bound(value, f"{prefix}inputs.{name}", bindings)
            inputs[name] = value.path if isinstance(value, _Data) else value
        return {"component": {"uri": job["component"]}, **({"inputs": inputs} if inputs else {})}


def load_job_file(path: str, overrides: Sequence[str] = ()) -> JobSpec:
    """A BatchInferenceJob file, or an AML v2 parallel job file converted to one; `overrides`
    (`--set key=value`) apply to the BatchInferenceJob's spec."""
    doc = read_yaml(path)
    if not is_aml_job(doc):
        return load_spec_file(path, overrides)
    resource = convert_file(path).resource
    if resource["kind"] != BATCH_INFERENCE_JOB.kind:
        raise AmlSpecError([f"{path}: an Azure ML pipeline job is a PipelineRun; run it with parallelrun run"])
    for item in overrides:
        apply_override(resource, item)
    return load_spec(resource, base_dir=os.path.dirname(os.path.abspath(path)))
