"""Storage faults on a real disk: an output that cannot be written, a full disk.

Each ends `parallelrun run` with exit code 2 and one line naming the path, the cause
and the fix (no traceback), and leaves no `.tmp-*` file behind. Root ignores file modes, so as root a read-only or full disk is a small
tmpfs mounted over the output folder (skipped where mounting is not permitted); the
chmod variant runs as any other user.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
from jobfolder import JobFolder

from parallelrun.runner.storage import (
    StorageError,
    atomic,
    open_atomic,
    remove_stale_temporaries,
    storage_error,
    write_atomic,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -- helpers ------------------------------------------------------------------------------


class Job(JobFolder):
    """A files-input job whose score.py is written with the YAML; run through the CLI."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.output.mkdir()

    def write(self, run_body: str = "return [f'{p} ok' for p in mini_batch]", **spec) -> Path:
        self.script(f"""
            def run(mini_batch):
                {run_body}
            """)
        return super().write(**{"runInvocationTimeout": 30, **spec})

    def run(self, path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
        env = dict(os.environ, PARALLELRUN_TERMINATION_LOG=str(self.root / "termination-log"), COLUMNS="200")
        return subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(path)], cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, env=env)

    def temporaries(self) -> list[Path]:
        return sorted(self.output.rglob(".tmp-*"))


@pytest.fixture
def job(tmp_path) -> Job:
    return Job(tmp_path)


@pytest.fixture
def tmpfs():
    """mount(path, size): a tmpfs of `size` over `path`, unmounted after the test (root only)."""
    mounted: list[Path] = []

    def mount(path: Path, size: str = "1m") -> Path:
        if not IS_ROOT:
            pytest.skip("mounting a tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_read_only(path: Path) -> None:
    result = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"remounting read-only is not permitted here: {result.stderr.strip()}")


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the disk of `folder`, then free `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        block = b"\0" * 65536
        try:
            while f.write(block):
                pass
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))


def assert_one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, no traceback, and the last line of stderr names every fragment; the cause appears once."""
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    last = lines[-1]
    for fragment in fragments:
        assert fragment in last, f"{fragment!r} not in the last line {last!r}"
    assert sum(fragments[0] in line for line in lines) == 1, result.stderr[-3000:]
    return last


# -- a read-only output -------------------------------------------------------------------


@pytest.mark.skipif(IS_ROOT, reason="root ignores file modes (the tmpfs test covers root)")
def test_output_folder_without_write_permission(job):
    job.files(3)
    path = job.write()
    job.output.chmod(0o555)
    try:
        result = job.run(path)
    finally:
        job.output.chmod(0o755)
    last = assert_one_line(result, "not writable", str(job.output), "output.uri")
    assert "permission denied" in last
    assert job.temporaries() == []


def test_read_only_output_file_system(job, tmpfs):
    job.files(3)
    path = job.write()
    tmpfs(job.output)
    remount_read_only(job.output)
    result = job.run(path)
    last = assert_one_line(result, "output not writable", str(job.output), "(read-only file system)", "output.uri")
    assert "choose another output.uri or fix its permissions" in last


# -- an output under, or in place of, a regular file ------------------------------------------


@pytest.mark.parametrize(("output", "blocker"), [
    ("afile/out/", "afile"),  # a folder under a file
    ("afile", "afile"),  # the output itself is a file
    ("out/", "out/_parallelrun"),  # the run's folder is a file
])
def test_output_in_the_way_of_a_regular_file(job, output, blocker):
    """One line naming the file in the way and output.uri, exit 2, no traceback."""
    job.files(3)
    (job.root / "afile").write_text("x\n")
    (job.root / "out").mkdir()
    (job.root / "out/_parallelrun").write_text("x\n")
    result = job.run(job.write(output={"uri": output}))
    assert_one_line(result, "output not writable: ", f"({job.root}/{blocker} is a file, not a folder)",
                           "choose another output.uri, or move the file away")
    assert (job.root / "afile").read_text() == "x\n"


# -- a full disk --------------------------------------------------------------------------


def test_full_disk_while_planning(job, tmpfs):
    """The plan (about 100 bytes a mini-batch) does not fit: exit 2, no temporary left."""
    job.files(1500)
    path = job.write(miniBatchSize=1)
    tmpfs(job.output)
    fill(job.output, leave=32 * 1024)
    result = job.run(path)
    last = assert_one_line(result, "no space left writing", str(job.output), "free space or choose another output.uri")
    assert "/_parallelrun/" in last
    assert job.temporaries() == []


def test_full_disk_while_merging(job, tmpfs):
    """Six 120 kB parts fit on a 1 MB disk, their 720 kB merged output does not."""
    job.files(6)
    path = job.write("return ['x' * 120_000 for p in mini_batch]", miniBatchSize=1)
    tmpfs(job.output, "1m")
    result = job.run(path)
    assert_one_line(result, "no space left", "free space or choose another output.uri")
    assert job.temporaries() == []
    assert not (job.output / "parallel_run_step.txt").exists()


SCORING_FILLS_THE_DISK = "return ['x' * 200_000 for p in mini_batch]"


def test_full_disk_while_scoring_leaves_no_partial_parts(job, tmpfs):
    """Parts that no longer fit leave no `.tmp-*` litter and no half-written part."""
    job.files(8)
    path = job.write(SCORING_FILLS_THE_DISK, miniBatchSize=1, runMaxTry=1)
    tmpfs(job.output, "1m")
    result = job.run(path)
    assert result.returncode != 0, result.stderr[-3000:]
    assert job.temporaries() == []
    parts = list(job.output.rglob("parts/*"))
    assert all(p.stat().st_size > 200_000 for p in parts), [(p.name, p.stat().st_size) for p in parts]


def test_full_disk_while_scoring_exits_2(job, tmpfs):
    job.files(8)
    path = job.write(SCORING_FILLS_THE_DISK, miniBatchSize=1)
    tmpfs(job.output, "1m")
    result = job.run(path)
    last = assert_one_line(result, "no space left writing", str(job.output), "free space or choose another output.uri")
    # Whichever write found the disk full first: a worker's group of parts, or the shard's commit
    # record of the parts before it (the parts are written on the workers' writer threads).
    assert "/parts/" in last or "/commits/" in last
    assert job.temporaries() == []


# -- write_atomic and open_atomic ------------------------------------------------------------


class _FullDiskFile:
    """A real file whose writes fail as a full disk's do."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture
def full_disk(monkeypatch):
    """write_atomic's and open_atomic's files are created, then every write fails with ENOSPC."""
    real_open = open
    monkeypatch.setattr(atomic, "open", lambda path, mode="r", *a, **k: _FullDiskFile(real_open(path, mode, *a, **k)),
                        raising=False)


def test_write_atomic_leaves_no_temporary_on_enospc(tmp_path, full_disk):
    fs = fsspec.filesystem("file")
    target = tmp_path / "out" / "part-1.txt"
    with pytest.raises(StorageError) as caught:
        write_atomic(fs, str(target), b"data")
    assert str(caught.value) == f"no space left writing {target}; free space or choose another output.uri"
    assert caught.value.exit_code == 2 and caught.value.transient
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENOSPC
    assert os.listdir(target.parent) == []


def test_write_atomic_on_a_full_tmpfs(tmp_path, tmpfs):
    folder = tmpfs(tmp_path / "small", "64k")
    fs = fsspec.filesystem("file")
    with pytest.raises(StorageError, match="no space left writing .*/small/big.bin; free space"):
        write_atomic(fs, str(folder / "big.bin"), b"x" * 200_000)
    assert os.listdir(folder) == []
    write_atomic(fs, str(folder / "small.bin"), b"fits")  # the space is free again
    assert os.listdir(folder) == ["small.bin"]


def test_write_atomic_on_a_read_only_tmpfs(tmp_path, tmpfs):
    folder = tmpfs(tmp_path / "ro")
    remount_read_only(folder)
    with pytest.raises(StorageError, match=r"output not writable: .*/ro/sub/a.txt \(read-only file system\)"):
        write_atomic(fsspec.filesystem("file"), str(folder / "sub" / "a.txt"), b"1")


def test_open_atomic_publishes_whole_or_nothing(tmp_path, full_disk):
    fs = fsspec.filesystem("file")
    target = tmp_path / "merged.txt"
    with pytest.raises(StorageError, match=f"no space left writing {target}"), open_atomic(fs, str(target)) as out:
        out.write(b"rows\n")
    assert os.listdir(tmp_path) == []


def test_open_atomic_raises_other_errors_unchanged(tmp_path):
    fs = fsspec.filesystem("file")
    with pytest.raises(KeyError), open_atomic(fs, str(tmp_path / "merged.txt")) as out:
        out.write(b"half")
        raise KeyError("a column")
    assert os.listdir(tmp_path) == []
    with open_atomic(fs, str(tmp_path / "merged.txt")) as out:
        out.write(b"whole")
    assert os.listdir(tmp_path) == ["merged.txt"] and (tmp_path / "merged.txt").read_bytes() == b"whole"


@pytest.mark.parametrize("protocol", ["file", "memory"])
def test_remove_stale_temporaries(tmp_path, protocol):
    fs = fsspec.filesystem(protocol)
    folder = str(tmp_path / "out") if protocol == "file" else f"/stale-{tmp_path.name}"
    names = [f".tmp-{'a' * 32}-output.txt", f".tmp-{'b' * 32}-summary.json", "output.txt", ".tmp-not-ours.txt",
             "part.tmp-x"]
    fs.makedirs(folder, exist_ok=True)
    for name in names:
        fs.pipe_file(f"{folder}/{name}", b"x")
    removed = remove_stale_temporaries(fs, folder, "output.txt")
    assert [os.path.basename(p) for p in removed] == [f".tmp-{'a' * 32}-output.txt"]
    remove_stale_temporaries(fs, folder)
    assert sorted(os.path.basename(p) for p in fs.ls(folder, detail=False)) == [".tmp-not-ours.txt", "output.txt",
                                                                              "part.tmp-x"]
    assert remove_stale_temporaries(fs, folder + "/missing") == []


# -- storage_error: the classification ---------------------------------------------------------


def test_storage_error_local_causes():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert str(storage_error(full, "/out/x.txt")) == "no space left writing /out/x.txt; free space or choose another output.uri"
    assert str(storage_error(full)) == "no space left on the device; free space or choose another output.uri"
    quota = OSError(errno.EDQUOT, "Disk quota exceeded", "/out/x.txt")
    assert str(storage_error(quota)).startswith("disk quota exceeded writing /out/x.txt; free space")
    read_only = OSError(errno.EROFS, "Read-only file system", f"/out/.tmp-{'0' * 32}-summary.json")
    assert str(storage_error(read_only)) == ("output not writable: /out/summary.json (read-only file system); "
                                             "choose another output.uri or fix its permissions")
    denied = PermissionError(errno.EACCES, "Permission denied", "/out/_parallelrun")
    assert str(storage_error(denied, writing=True)).startswith("output not writable: /out/_parallelrun (permission denied)")
    assert str(storage_error(denied)).startswith("permission denied: /out/_parallelrun; fix its permissions")
    for error in (full, quota, read_only, denied):
        assert storage_error(error).exit_code == 2
    assert storage_error(FileNotFoundError(errno.ENOENT, "No such file", "/x")) is None
    assert storage_error(OSError(errno.EIO, "I/O error")) is None
    assert storage_error(ValueError("not storage")) is None


def test_storage_error_walks_the_chain():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("while writing the merge") from e
    except RuntimeError as e:
        assert str(storage_error(e, "/out/o.txt")).startswith("no space left writing /out/o.txt")
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise KeyError("something else") from None
    except KeyError as e:
        assert storage_error(e) is None  # `from None` says the first one does not matter
    error = StorageError("already classified")
    assert storage_error(RuntimeError("wrapped")) is None
    assert storage_error(error) is error


def test_storage_error_azure_causes(monkeypatch):
    ax = pytest.importorskip("azure.core.exceptions")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    refused = ax.HttpResponseError(message="Server failed to authenticate the request.")
    refused.status_code, refused.error_code = 403, "AuthorizationFailure"
    assert str(storage_error(refused, "az://data/in/")) == (
        "Azure Storage refused access to az://data/in/ (403 AuthorizationFailure): check the credentials in "
        "AZURE_STORAGE_CONNECTION_STRING or the Secret named by spec.storage.secretRef")
    auth = ax.ClientAuthenticationError(message="no")
    auth.status_code, auth.error_code = 403, "AuthorizationPermissionMismatch"
    assert "Storage Blob Data Contributor" in str(storage_error(auth, "az://data/in/"))

    down = ax.ServiceRequestError("Cannot connect to host x.blob.core.windows.net:443", error=ConnectionRefusedError())
    down.parallelrun_attempts, down.parallelrun_endpoint = 6, "https://x.blob.core.windows.net"
    message = str(storage_error(down, "az://data/out/"))
    assert message == ("cannot reach Azure Storage at https://x.blob.core.windows.net for az://data/out/ after 6 attempts: "
                       "connection refused; check the account name/endpoint and the network")
    assert storage_error(down).transient

    missing = ax.ResourceNotFoundError(message="The specified container does not exist.")
    missing.error_code = "ContainerNotFound"
    assert str(storage_error(missing, "az://nope/in/")) == ("Azure Storage container 'nope' does not exist "
                                                            "(az://nope/in/); create it or fix the URI")
    blob_missing = ax.ResourceNotFoundError(message="The specified blob does not exist.")
    blob_missing.error_code = "BlobNotFound"
    assert storage_error(blob_missing) is None

    no_credentials = ValueError("unable to connect to account for Must provide either a connection_string or "
                                "account_name with credentials!!")
    assert str(storage_error(no_credentials, "az://data/")).startswith("no Azure Storage credentials for az://data/: set")


def test_storage_error_never_shows_credentials(monkeypatch):
    key = "c2VjcmV0LWtleS1ub2JvZHktbXVzdC1zZWU="
    connection = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=core.windows.net"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
    sas = "sv=2022-11-02&ss=b&sig=dGhpcy1pcy1hLXNpZ25hdHVyZQ%3D%3D"
    error = ValueError(f"unable to connect to account for bad {connection} and ?{sas}")
    message = str(storage_error(error, "az://data/"))
    assert key not in message and "dGhpcy1pcy1hLXNpZ25hdHVyZQ" not in message and connection not in message
    assert "AZURE_STORAGE_CONNECTION_STRING" in message
    assert str(StorageError(f"x {key} y")) == "x *** y"
