"""`parallelrun report`: one self-contained page per run, with the figures of the run, for runs
finished, failed, in progress and from before runs kept report lines; escaped; small for
100,000 mini-batches; rendered by a real headless browser without console errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from html.parser import HTMLParser

import pytest
from reportfolder import known_attempts, write_known_report
from runlines import attempt, failing_job, run_folder, summary, write_report_lines

from cli.test_commands import parallelrun
from parallelrun.runner.lock import RunLock
from parallelrun.runner.report import MAX_ERROR_GROUPS, SLOWEST, gather
from parallelrun.runner.reportpage import render
from parallelrun.runner.runfolders import locate


class _Page(HTMLParser):
    """The text of each element with an id, and every tag and URL the page names."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self._open: list[tuple[str | None, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag not in ("meta", "br", "img", "input", "link", "rect", "polyline", "text"):
            self._open.append((attrs.get("id"), []))

    def handle_endtag(self, tag):
        if tag in ("meta", "br", "img", "input", "link", "rect", "polyline", "text") or not self._open:
            return
        element_id, text = self._open.pop()
        joined = "".join(text) + ("\t" if tag in ("td", "th") else "")  # a table's text keeps its cells apart
        if element_id:
            self.by_id[element_id] = joined
        if self._open:
            self._open[-1][1].append(joined)

    def handle_data(self, data):
        if self._open:
            self._open[-1][1].append(data)


def page_of(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture
def finished_run(job, monkeypatch):
    """A finished local run of 10 files on two shards of two workers, 2 of which fail: known figures.
    Resources are sampled every 0.2 s (after the first second) and each mini-batch takes 0.4 s."""
    monkeypatch.setenv("PARALLELRUN_SAMPLE_SECONDS", "0.2")
    path = failing_job(job, pause=0.4, nodeCount=2)
    result = parallelrun("run", str(path))
    assert result.returncode == 0, result.stderr
    return job, run_folder(job)


def test_the_report_shows_the_figures_of_a_known_run(finished_run, tmp_path):
    job, folder = finished_run
    out = tmp_path / "r.html"
    result = parallelrun("report", str(job.output), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    page = page_of(out.read_text())
    s = summary(folder)
    assert page.by_id["phase"] == "Succeeded"
    assert page.by_id["items-succeeded"] == f"{s['items']['succeeded']:,}" == "8"
    assert page.by_id["items-failed"] == f"{s['items']['failed']:,}" == "2"
    assert page.by_id["planned-mini-batches"] == "10"
    failures = page.by_id["failures-table"]
    assert "cannot score <script>alert('…')</script> bad_#.txt\t2\t2\t" in failures  # one kind, shown as text
    assert failures.count("mini-batch") == 2  # an example per failing file
    assert page.by_id["attempts"] == "10" and page.by_id["failed-attempts"] == "2"  # runMaxTry 1
    assert re.search(r"shard-[01]-worker-[01]", page.by_id["slowest-table"])
    workers = set(re.findall(r"shard-\d+-worker-\d+\t", page.by_id["idle-table"]))
    assert workers and workers <= {f"shard-{s}-worker-{w}\t" for s in (0, 1) for w in (0, 1)}
    for shard in (0, 1):  # local shards: pods on this host
        assert f"{socket.gethostname()} (shard {shard})\t" in page.by_id["resources-table"]
    assert "spec" in page.by_id and "errorThreshold" in page.by_id["spec"]
    assert "summary" in page.by_id and folder.name in page.by_id["summary"]


def test_everything_from_the_run_is_escaped(finished_run):
    _, folder = finished_run
    html = render(gather(*locate(str(folder))))
    assert "<script" not in html.lower()  # the page has no script, and the run's markup stays text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    page = page_of(html)
    assert page.tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "span", "div", "section",
                         "p", "svg", "g", "rect", "polyline", "text", "table", "tr", "th", "td", "code", "details",
                         "summary", "pre"}, page.tags
    assert page.urls == []  # nothing to fetch: it opens offline


def test_the_report_names_the_run_by_its_folder_or_its_output(finished_run, tmp_path):
    job, folder = finished_run
    by_folder = tmp_path / "a.html"
    assert parallelrun("report", str(folder), "-o", str(by_folder)).returncode == 0
    default = parallelrun("report", str(job.output), cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert (tmp_path / f"{folder.name}.html").read_text().count(folder.name) >= 2


@pytest.mark.parametrize("where", ["nowhere", "empty", "no such run"])
def test_no_run_there_is_a_one_line_error(tmp_path, where):
    (tmp_path / "empty").mkdir()
    target = {"nowhere": tmp_path / "missing", "empty": tmp_path / "empty",
              "no such run": tmp_path / "empty" / "_parallelrun" / "x-1"}[where]
    result = parallelrun("report", str(target))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(target) in line and ("output URI" in line or "parallelrun list" in line), line


def test_a_run_without_a_report_folder_says_what_is_missing(finished_run):
    """A run of an older version: no report lines and no spec; its failures come from errors.jsonl."""
    _, folder = finished_run
    shutil.rmtree(folder / "report")
    (folder / "spec.json").unlink()
    for commits in folder.glob("commits/*/*.jsonl"):  # the records as an older version wrote them
        records = [json.loads(line) for line in commits.read_text().splitlines()]
        commits.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "report"}) + "\n" for r in records))
    report = gather(*locate(str(folder)))
    assert any("report/minibatches.csv" in m for m in report.missing)
    assert any("report/resources.csv" in m for m in report.missing)
    assert any("spec.json" in m for m in report.missing)
    assert [(g.attempts, g.items, len(g.examples)) for g in report.error_groups] == [(2, 2, 2)]  # errors.jsonl
    page = page_of(render(report))
    assert page.by_id["items-failed"] == "2"
    assert "failures-table" in page.by_id and "timeline-chart" not in page.by_id


def test_a_run_in_progress_is_reported_as_far_as_it_has_come(finished_run):
    job, folder = finished_run
    (folder / "summary.json").unlink()
    from parallelrun.runner.storage import filesystem

    fs, out = filesystem(str(job.output))
    with RunLock(fs, out, folder.name):
        report = gather(*locate(str(folder)))
    assert report.phase == "Running"
    assert any("not been merged" in m for m in report.missing)
    page = page_of(render(report))
    assert page.by_id["phase"] == "Running"
    assert page.by_id["items-succeeded"] == "8"  # from the commit records
    assert "in progress" in render(report)


def test_a_page_of_100000_mini_batches_stays_small(tmp_path):
    """Bars are binned per column and tables capped: the page does not grow with the run."""
    lines = []
    for i in range(100_000):
        worker = i % 64
        kind = i % (MAX_ERROR_GROUPS + 20)  # as many kinds of error (a kind: its message without its numbers)
        error = f"Error{chr(65 + kind % 26)}{chr(65 + kind // 26)}: failed at row {i}" if i % 97 == 0 else ""
        lines.append(attempt(i, worker % 8, start=(i // 64) * 0.5, seconds=0.4 + (i % 13) / 100, error=error,
                             shard=worker // 8))
    folder = tmp_path / "out" / "_parallelrun" / "big-1"
    folder.mkdir(parents=True)
    write_report_lines(folder, lines)
    report = gather(*locate(str(folder)))
    html = render(report)
    assert report.attempts == 100_000 and len(report.workers) == 64
    assert len(report.error_groups) == MAX_ERROR_GROUPS and report.more_error_groups == 20
    assert len(report.slowest) == SLOWEST
    assert len(html) < 3_000_000, len(html)
    assert html.count("<rect") < 64 * 700


def _chromium() -> str:
    """Debian's chromium: installed here as root where it is missing, else the test is skipped saying why."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium and no root to install it: apt-get install chromium (Debian's package)")
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:  # package lists not fetched yet on this machine
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
        installed = subprocess.run(install, capture_output=True, text=True, timeout=900)
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"chromium cannot be installed here: {installed.stderr.strip()[-300:]}")
    return found


def _browser(chromium: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND", *args], capture_output=True,
                          text=True, timeout=120)


def test_a_real_browser_renders_the_report_without_console_errors(finished_run, tmp_path):
    chromium = _chromium()
    job, _ = finished_run
    out = tmp_path / "report.html"
    assert parallelrun("report", str(job.output), "-o", str(out)).returncode == 0
    dom = _browser(chromium, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    page = page_of(dom.stdout)  # the DOM the browser built, not the file
    assert page.by_id["phase"] == "Succeeded"
    assert page.by_id["items-succeeded"] == "8" and page.by_id["items-failed"] == "2"
    assert re.search(r"cannot score <script>alert\('x'\)</script> bad_000[01]\.txt", page.by_id["failures-table"])
    assert "timeline-chart" in page.by_id and "throughput-chart" in page.by_id
    shot = tmp_path / "report.png"
    taken = _browser(chromium, f"--screenshot={shot}", "--window-size=1280,2200", out.as_uri())
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]


def test_the_figures_of_a_known_report_folder(tmp_path):
    """Retried, failed and partly failed attempts, a timed-out worker, two pods of two workers with their own
    samples: each figure as the lines give it."""
    layout = write_known_report(tmp_path / "out")
    report = gather(*locate(layout.root))
    assert (report.attempts, report.failed_attempts) == (9, 4)  # three retried, one failed
    groups = {g.error: (g.attempts, g.items) for g in report.error_groups}
    assert groups == {"RuntimeError: always": (2, 10), "ValueError: flaky": (1, 0),
                      "run() returned # results for # items": (1, 1),
                      "TimeoutError: run() did not return within runInvocationTimeout (# s)": (1, 0)}
    assert [(a.line.mini_batch, a.line.attempt) for a in report.slowest[:2]] == [(5, 1), (3, 1)]
    assert [w.key for w in report.workers] == ["shard-0-worker-0", "shard-0-worker-1", "shard-1-worker-0",
                                               "shard-1-worker-1"]
    span = report.end - report.start
    assert span == pytest.approx(21.7)  # mini-batch 5's second attempt ends last
    busy = {w.key: w.busy_seconds for w in report.workers}
    assert busy == pytest.approx({"shard-0-worker-0": 1.8, "shard-0-worker-1": 1.5, "shard-1-worker-0": 21.4,
                                  "shard-1-worker-1": 2.0})
    assert {w.key: w.idle_seconds for w in report.workers} == pytest.approx(
        {k: span - v for k, v in busy.items()})
    assert sum(report.throughput) * report.throughput_seconds == pytest.approx(sum(
        a.succeeded + a.failed for a in known_attempts()))
    pods = {p.pod: p for p in report.resources}
    first, second = pods["pod-0 (shard 0)"], pods["pod-1 (shard 1)"]
    assert (first.cpu_mean, first.rss_max, first.gpu_util_mean, first.gpu_memory_max) == (
        195.0, 500 * 2**20, 80.0, 2 * 2**30)
    assert (second.gpu_util_mean, second.gpu_memory_max) == (None, None)
    page = page_of(render(report))
    assert page.by_id["attempts"] == "9" and page.by_id["failed-attempts"] == "4"
    assert "500.0 MiB" in page.by_id["resources-table"] and "2.0 GiB" in page.by_id["resources-table"]


def test_environment_values_in_the_spec_are_not_shown(finished_run):
    """A spec may carry a credential in environment.env: the page names the variable, not its value."""
    _, folder = finished_run
    spec = json.loads((folder / "spec.json").read_text())
    spec["environment"] = {"env": [{"name": "API_KEY", "value": "s3cr3t-value"}]}
    (folder / "spec.json").write_text(json.dumps(spec))
    html = render(gather(*locate(str(folder))))
    assert "API_KEY" in html and "s3cr3t-value" not in html
