"""The worker's part writer: groups of parts published on a thread while run() goes on."""

import threading

import pytest

from parallelrun.runner.commits import PartGroup
from parallelrun.runner.layout import Layout
from parallelrun.runner.storage import StorageUnavailable, filesystem
from parallelrun.runner.worker import PartsWritten, StorageFailed, _PartWriter


class _Group:
    """A group whose write waits for `release` (a disk's fsync, an object store's PUT)."""

    def __init__(self, name: str, outcome=None):
        self.name, self.outcome = name, outcome
        self.started, self.release = threading.Event(), threading.Event()

    def write(self):
        self.started.set()
        assert self.release.wait(10)
        if self.outcome is not None:
            raise self.outcome
        return self.name, [(int(self.name[1:]), 0, 1)]


def test_a_group_is_written_while_the_worker_goes_on_and_the_next_waits_for_it():
    sent = []
    writer = _PartWriter(sent.append)
    first, second = _Group("g1"), _Group("g2")
    writer.submit(first)  # returns at once: the worker runs its next mini-batches
    assert first.started.wait(10) and sent == []
    submitted = threading.Event()
    threading.Thread(target=lambda: (writer.submit(second), submitted.set()), daemon=True).start()
    assert not submitted.wait(0.2)  # two groups in memory at most: the third would wait here
    first.release.set()
    assert submitted.wait(10) and second.started.wait(10)
    second.release.set()
    writer.wait()
    assert sent == [PartsWritten("g1", [(1, 0, 1)]), PartsWritten("g2", [(2, 0, 1)])]


def test_a_refused_group_is_reported_and_no_later_group_is_written():
    sent = []
    writer = _PartWriter(sent.append)
    refused = _Group("g1", StorageUnavailable("no space left writing g1"))
    refused.release.set()
    writer.submit(refused)
    writer.wait()
    assert writer.refused and sent == [StorageFailed("no space left writing g1", True)]
    later = _Group("g2")
    later.release.set()
    writer.submit(later)
    writer.wait()
    assert not later.started.is_set() and len(sent) == 1


def test_an_unexpected_error_is_raised_in_the_workers_thread():
    writer = _PartWriter(lambda message: None)
    broken = _Group("g1", MemoryError("out of memory"))
    broken.release.set()
    writer.submit(broken)
    with pytest.raises(MemoryError, match="out of memory"):
        writer.wait()


def test_a_real_group_file_is_published_whole(tmp_path):
    fs, _ = filesystem(str(tmp_path))
    group = PartGroup(fs, Layout(str(tmp_path), "r"), "0-0")
    group.add(0, b"a,b\n1,2\n")
    group.add(1, b"a,b\n3,4\n")
    sent = []
    writer = _PartWriter(sent.append)
    writer.submit(group.take())
    writer.wait()
    (name, entries), = sent
    assert entries == [(0, 0, 8), (1, 8, 8)] and group.count == 0
    assert (tmp_path / "_parallelrun" / "r" / "parts" / name).read_bytes() == b"a,b\n1,2\na,b\n3,4\n"
