"""What `run(mini_batch, mini_batch_context)` receives, when run takes two parameters, as
Azure ML's parallel job passes it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from .plan import MiniBatch, Plan


@dataclass(frozen=True)
class InputDataset:
    """The input the mini-batch comes from (AML passes its dataset object)."""

    uri: str
    type: str
    format: str | None


class UnusableInput(Exception):
    """Raised by run() when no mini-batch can succeed (the input does not fit the model): the
    run stops with this error at once, as when init() fails, instead of failing every mini-batch."""


@dataclass(frozen=True)
class MiniBatchContext:
    """`partition_key_value`: the partition's column → value ({} without partitionKeys);
    `minibatch_index`: the mini-batch's index in plan order; `global_row_index_lower_bound`:
    tabular, the index of its first row in the whole input (the rows of the mini-batches before it
    in plan order), None where those rows are known only by reading them (csv/jsonl cut by size,
    compressed files: set miniBatchSize in rows to have it); files input, 0. `files`: its input
    files, relative to `dataset.uri`; `output_dir`: this attempt's side-output folder (ours, not AML's:
    where calls are in flight together, PARALLELRUN_OUTPUT_DIR is not one call's)."""

    partition_key_value: dict = field(default_factory=dict)
    minibatch_index: int = 0
    global_row_index_lower_bound: int | None = 0
    dataset: InputDataset | None = None
    files: tuple[str, ...] = ()
    output_dir: str | None = None


def wants_context(run) -> bool:
    """Whether `run` takes a second positional parameter (AML v2's mini_batch_context)."""
    try:
        parameters = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: called as run(mini_batch)
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def context_of(mb: MiniBatch, plan: Plan, output_dir: str | None = None) -> MiniBatchContext:
    return MiniBatchContext(
        partition_key_value=dict(mb.key or {}), minibatch_index=mb.id,
        global_row_index_lower_bound=0 if plan.input_type == "files" else mb.first_row,
        dataset=InputDataset(plan.input_uri, plan.input_type, plan.input_format), files=mb.paths,
        output_dir=output_dir)
