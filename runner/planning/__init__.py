"""Planning: list the input once, cut it into mini-batches, assign them to shards.

The plan is the single source of truth of a run: every shard reads its part of it and
nobody lists the input again, so input that changes mid-run cannot lose or double an
item. Mini-batches never span files (except a partition, which is one key's rows
across files); large tabular files are split (csv/jsonl by byte ranges on line
boundaries, parquet by row ranges aligned to row groups). Shards are contiguous runs
of mini-batches of about equal bytes.

    model     what a plan is: Plan, MiniBatch, the listed files (Listing, FileBatches), chunk sizes
    listing   the input listed once (a folder or a manifest), each file stamped
    cutting   tabular files cut into mini-batches (parquet row ranges, csv/jsonl rows, partitions)
    shards    mini-batches assigned to shards
    store     a plan written once and read back
    sources   what a plan was made from, and whether it changed
    making    make_plan, and ensure_plan (made now, or read back and checked)
"""

from .listing import Listing, file_version, list_input, manifest_entries
from .making import ensure_plan, make_plan
from .model import PLAN_VERSION, FileBatches, InputChanged, InputFile, MiniBatch, Plan, PlanError, chunk_size
from .shards import shard, shards_with_work
from .sources import changed_sources, input_changes, source_versions, tree_version
from .store import plan_lines, read_plan, read_shard, write_plan

__all__ = ["PLAN_VERSION", "FileBatches", "InputChanged", "InputFile", "Listing", "MiniBatch", "Plan", "PlanError",
           "changed_sources", "chunk_size", "ensure_plan", "file_version", "input_changes", "list_input",
           "make_plan", "manifest_entries", "plan_lines", "read_plan", "read_shard", "shard", "shards_with_work",
           "source_versions", "tree_version", "write_plan"]
