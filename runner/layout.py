"""The output layout (DESIGN.md, "Output layout"): every path a run reads or writes.

    <output.uri>/<fileName>                              final output, in plan order
    <output.uri>/_parallelrun/<run-id>/plan/             plan.json + one shard-NNNNN.jsonl per shard
    <output.uri>/_parallelrun/<run-id>/parts/g-<shard>-<worker>-<token>.<ext>  a group of mini-batches' rows
    <output.uri>/_parallelrun/<run-id>/commits/NNNNN/<token>.jsonl  a group of commit records: the commit point
    <output.uri>/_parallelrun/<run-id>/parts/NNNNNNNNN.<ext>, done/NNNNNNNNN.json  the same, one per
                                                         mini-batch, as runs before group commits wrote them
    <output.uri>/_parallelrun/<run-id>/shards/NNNNN.json       a finished shard's counts and errors
    <output.uri>/_parallelrun/<run-id>/side/<mini-batch>/...   side outputs kept until published (sideoutputs.py)
    <output.uri>/_parallelrun/<run-id>/progress/NNNNN.json     a scoring pod's counts so far (for the operator)
    <output.uri>/_parallelrun/<run-id>/claims/NNNNNNNNN        which pod index holds the chunk that starts there
    <output.uri>/_parallelrun/<run-id>/claims/alive-NNNNN      a scoring pod's heartbeat
    <output.uri>/_parallelrun/<run-id>/report/minibatches.csv  one line per attempt of each mini-batch, in
                                                         plan order (merged from the commit records' `report`)
    <output.uri>/_parallelrun/<run-id>/report/resources.csv    resource samples of every pod, by time (merged)
    <output.uri>/_parallelrun/<run-id>/report/resources/NNNNN-<token>-NNNN.csv  a pod's samples before the
                                                         merge: pod index, pod attempt, piece
    <output.uri>/_parallelrun/<run-id>/summary.json, errors.jsonl
    <output.uri>/_parallelrun/<run-id>/spec.json       the spec the run was planned with (for its report)
    <output.uri>/_parallelrun/<run-id>/report/report.html  the run's report, written with the merge

A Layout built on the output filesystem's path gives paths to read and write; built
on the output URI (Layout.uris) it gives the same places as URIs, to show a user.
"""

from __future__ import annotations

from .spec import JobSpec
from .storage import join

PART_EXTENSIONS = {"txt": "txt", "csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}


def run_id_for(spec: JobSpec, salt: bytes = b"") -> str:
    """A run id that is the same for the same normalized spec (and `salt`, e.g. the
    scoring script's bytes), so a rerun after a crash resumes the same run."""
    return f"{spec.name}-{spec.fingerprint(salt)[:10]}"


REPAIR_MARKER = "repair.json"


class Layout:
    """Paths of one run, inside the output filesystem (no protocol); URIs with Layout.uris."""

    def __init__(self, output_path: str, run_id: str, output_format: str = "txt"):
        self.output_path = output_path
        self.run_id = run_id
        self.root = join(output_path, "_parallelrun", run_id)
        self.part_ext = PART_EXTENSIONS[output_format]

    @classmethod
    def uris(cls, spec: JobSpec, run_id: str) -> Layout:
        """The run's places as URIs under `spec.output.uri`, as the user wrote it (no storage access)."""
        return cls(spec.output.uri.rstrip("/") or "/", run_id, spec.output.format)

    @property
    def plan_dir(self) -> str:
        return join(self.root, "plan")

    @property
    def repair_marker(self) -> str:
        """Present while (and after) the run is repaired (repair.py): its failed mini-batches run again."""
        return join(self.root, REPAIR_MARKER)

    @property
    def plan_header(self) -> str:
        return join(self.plan_dir, "plan.json")

    def plan_shard(self, index: int) -> str:
        return join(self.plan_dir, f"shard-{index:05d}.jsonl")

    @property
    def parts_dir(self) -> str:
        return join(self.root, "parts")

    def part(self, mini_batch_id: int) -> str:
        """A mini-batch's own part file (commits.Parts finds a committed part wherever it lies: its
        own file or a range of a group's)."""
        return join(self.parts_dir, f"{mini_batch_id:09d}.{self.part_ext}")

    def commits_dir(self, shard: int) -> str:
        return join(self.root, "commits", f"{shard:05d}")

    @property
    def all_commits_dir(self) -> str:
        return join(self.root, "commits")

    @property
    def done_dir(self) -> str:
        return join(self.root, "done")

    def done(self, mini_batch_id: int) -> str:
        return join(self.done_dir, f"{mini_batch_id:09d}.json")

    @property
    def side_dir(self) -> str:
        return join(self.root, "side")

    def side(self, mini_batch_id: int) -> str:
        return join(self.side_dir, str(mini_batch_id))

    @property
    def shards_dir(self) -> str:
        return join(self.root, "shards")

    def shard_result(self, index: int) -> str:
        return join(self.shards_dir, f"{index:05d}.json")

    @property
    def progress_dir(self) -> str:
        return join(self.root, "progress")

    def progress(self, index: int) -> str:
        return join(self.progress_dir, f"{index:05d}.json")

    @property
    def claims_dir(self) -> str:
        return join(self.root, "claims")

    def claim(self, chunk: int) -> str:
        return join(self.claims_dir, f"{chunk:09d}")

    def heartbeat(self, index: int) -> str:
        return join(self.claims_dir, f"alive-{index:05d}")

    @property
    def report_dir(self) -> str:
        return join(self.root, "report")

    @property
    def report_mini_batches(self) -> str:
        return join(self.report_dir, "minibatches.csv")

    @property
    def report_resources(self) -> str:
        return join(self.report_dir, "resources.csv")

    @property
    def resource_pieces_dir(self) -> str:
        return join(self.report_dir, "resources")

    def resource_piece(self, index: int, token: str, piece: int) -> str:
        """Pod index `index`'s samples, its attempt `token`, piece `piece` (a piece is rewritten whole as
        samples come, a new one begun once it is large)."""
        return join(self.resource_pieces_dir, f"{index:05d}-{token}-{piece:04d}.csv")

    @property
    def summary(self) -> str:
        return join(self.root, "summary.json")

    @property
    def report_page(self) -> str:
        return join(self.root, "report", "report.html")

    @property
    def spec(self) -> str:
        return join(self.root, "spec.json")

    @property
    def errors(self) -> str:
        return join(self.root, "errors.jsonl")

    def final_output(self, file_name: str) -> str:
        return join(self.output_path, file_name)
