"""A run's report as one self-contained HTML page: inline CSS and SVG, no script, nothing
fetched, so it opens on an air-gapped laptop and as a CI artifact. Everything that comes
from the run (errors, names, the spec) is escaped.
"""

from __future__ import annotations

import datetime
import json
from html import escape

from .report import MAX_IDLE_ROWS, Report, WorkerRow, gather
from .storage import write_atomic

CHART_WIDTH = 900
LABEL_WIDTH = 150
TIMELINE_HEIGHT_MAX = 480

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2430;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
.sub{color:#5b6577}.phase{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600}
.Succeeded{background:#2e7d32}.Failed{background:#c62828}.Running,.Planning{background:#1565c0}
.Incomplete{background:#8d6e00}
.notice{background:#fff8e1;border:1px solid #f0d58c;padding:8px 12px;border-radius:4px;margin:12px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #dde2ea;border-radius:6px;padding:8px 14px;min-width:120px}
.card .v{font-size:20px;font-weight:600}.card .k{color:#5b6577;font-size:12px}
table{border-collapse:collapse;margin:6px 0}th,td{border-bottom:1px solid #e6e9ef;padding:3px 10px;text-align:left;
vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;padding:10px;overflow:auto;max-height:420px;font-size:12px}
details pre{max-height:240px}svg text{font-size:11px;fill:#5b6577}.more{color:#5b6577;font-style:italic}
"""


def publish(fs, layout) -> str:
    """Write the run's report beside its records (Layout.report_page); returns its path."""
    write_atomic(fs, layout.report_page, render(gather(fs, layout)).encode())
    return layout.report_page


def render(report: Report) -> str:
    """The whole page."""
    title = f"parallelrun report: {report.run_id}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
             _header(report), _notices(report), _cards(report),
             _section("Timeline of workers", "timeline", _timeline(report)),
             _section("Throughput", "throughput", _throughput(report)),
             _section("Failures by error", "failures", _failures(report)),
             _section("Slowest mini-batches", "slowest", _slowest(report)),
             _section("Idle time per worker", "idle", _idle(report)),
             _section("Resource use per pod", "resources", _resources(report)),
             _section("Summary", "summary", _json(report.summary.to_dict()) if report.summary is not None
                      else "<p class=\"more\">No summary yet.</p>"),
             _section("Spec", "spec", _json(report.spec) if report.spec is not None
                      else "<p class=\"more\">The run did not keep its spec.</p>"),
             "</body></html>\n"]
    return "".join(parts)


def _time(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """12.3 → '12.3s', 75 → '1:15', 3725 → '1:02:05', 2 days and more → '2d3h'; None → '-'."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds + 0.5)
    if s >= 2 * 86400:
        return f"{s // 86400}d{s // 3600 % 24}h"
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _section(title: str, anchor: str, body: str) -> str:
    return f"<section id=\"{anchor}\"><h2>{escape(title)}</h2>{body}</section>"


def _header(report: Report) -> str:
    phase = escape(report.phase)
    return (f"<h1>Run {escape(report.run_id)} <span class=\"phase {phase}\" id=\"phase\">{phase}</span></h1>"
            f"<div class=\"sub\">{escape(report.uri)} · report of {_time(report.generated)}</div>")


def _notices(report: Report) -> str:
    notes = []
    if report.phase in ("Running", "Planning"):
        notes.append(f"This run is in progress: the figures are those of {_time(report.generated)}; make the report "
                     "again for later ones.")
    notes += [f"Not in this report: {m}." for m in report.missing]
    return "".join(f"<div class=\"notice\">{escape(n)}</div>" for n in notes)


def _cards(report: Report) -> str:
    counts = report.status
    planned = report.plan_totals or {}
    elapsed = report.end - report.start if report.start is not None and report.end is not None else None
    rate = report.items / elapsed if elapsed else None
    values = [
        ("mini-batches planned", _n(planned.get("miniBatches")), "planned-mini-batches"),
        ("mini-batches succeeded", _n(counts["miniBatches"]["succeeded"]), "mini-batches-succeeded"),
        ("mini-batches failed", _n(counts["miniBatches"]["failed"]), "mini-batches-failed"),
        ("items succeeded", _n(counts["items"]["succeeded"]), "items-succeeded"),
        ("items failed", _n(counts["items"]["failed"]), "items-failed"),
        ("attempts", _n(report.attempts), "attempts"),
        ("failed attempts", _n(report.failed_attempts), "failed-attempts"),
        ("scoring time", duration(elapsed), "scoring-time"),
        ("items per second", f"{rate:,.1f}" if rate is not None else "-", "items-per-second"),
    ]
    if counts.get("etaSeconds") is not None:
        values.append(("ETA", duration(counts["etaSeconds"]), "eta"))
    cards = "".join(f"<div class=\"card\"><div class=\"v\" id=\"{key}\">{escape(v)}</div>"
                    f"<div class=\"k\">{escape(k)}</div></div>" for k, v, key in values)
    return f"<div class=\"cards\">{cards}</div>"


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


def _axis(report: Report, x0: int, y: float, width: int) -> str:
    """Time labels under a chart: minutes:seconds from the first attempt."""
    span = (report.end or 0) - (report.start or 0)
    ticks = []
    for i in range(6):
        x = x0 + width * i / 5
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        ticks.append(f"<text x=\"{x:.0f}\" y=\"{y:.0f}\" text-anchor=\"{anchor}\">{duration(span * i / 5)}</text>")
    return "".join(ticks)


def _timeline(report: Report) -> str:
    if not report.workers:
        return "<p class=\"more\">No attempt lines: no timeline.</p>"
    rows = len(report.workers)
    row_height = max(2, min(18, TIMELINE_HEIGHT_MAX // rows))
    width = CHART_WIDTH
    columns = len(report.workers[0].busy)
    scale = width / columns
    body, labels = [], []
    for i, row in enumerate(report.workers):
        y = i * row_height
        if row_height >= 8:
            labels.append(f"<text x=\"{LABEL_WIDTH - 6}\" y=\"{y + row_height - 4}\" text-anchor=\"end\">"
                          f"{escape(row.key[-24:])}</text>")
        body.append(_bars(row, y, row_height, scale))
    height = rows * row_height
    legend = ("<p class=\"sub\">Each row is a worker; blue is the share of each time slice spent "
              "on mini-batches, red marks failed attempts. Hover a bar for its figures.</p>")
    more = (f"<p class=\"more\">{report.more_workers:,} more workers not drawn.</p>" if report.more_workers else "")
    return (f"{legend}<svg id=\"timeline-chart\" width=\"{LABEL_WIDTH + width + 10}\" height=\"{height + 24}\" "
            f"role=\"img\" aria-label=\"timeline of {rows} workers\">{''.join(labels)}"
            f"<g transform=\"translate({LABEL_WIDTH},0)\">"
            f"<rect width=\"{width}\" height=\"{height}\" fill=\"#f4f6f9\"/>{''.join(body)}</g>"
            f"{_axis(report, LABEL_WIDTH, height + 16, width)}</svg>{more}")


def _bars(row: WorkerRow, y: int, height: int, scale: float) -> str:
    """A worker's row: runs of columns of one busy level merged into one bar; failures on top."""
    out = []
    level = [round(b * 4) / 4 for b in row.busy]
    start = 0
    for column in range(1, len(level) + 1):
        if column == len(level) or level[column] != level[start]:
            if level[start] > 0:
                out.append(f"<rect x=\"{start * scale:.1f}\" y=\"{y}\" width=\"{(column - start) * scale:.1f}\" "
                           f"height=\"{max(1, height - 1)}\" fill=\"#1e88e5\" fill-opacity=\"{level[start]:.2f}\">"
                           f"<title>{escape(row.key)}: {level[start]:.0%} busy</title></rect>")
            start = column
    for column, failures in enumerate(row.failures):
        if failures:
            out.append(f"<rect class=\"failure\" x=\"{column * scale:.1f}\" y=\"{y}\" "
                       f"width=\"{max(2.0, scale):.1f}\" height=\"{max(1, height - 1)}\" fill=\"#d32f2f\">"
                       f"<title>{escape(row.key)}: {failures} failed attempt{'s' if failures != 1 else ''}"
                       f"</title></rect>")
    return "".join(out)


def _throughput(report: Report) -> str:
    if not report.throughput:
        return "<p class=\"more\">No attempt lines: no throughput.</p>"
    width, height = CHART_WIDTH, 160
    peak = max(report.throughput) or 1.0
    step = width / len(report.throughput)
    points = " ".join(f"{x:.1f},{height - v / peak * (height - 4):.1f}"
                      for i, v in enumerate(report.throughput) for x in (i * step, (i + 1) * step))
    return (f"<p class=\"sub\">Items finished per second, in slices of {duration(report.throughput_seconds)}; "
            f"peak {peak:,.1f}/s.</p><svg id=\"throughput-chart\" width=\"{LABEL_WIDTH + width + 10}\" "
            f"height=\"{height + 24}\" role=\"img\" aria-label=\"throughput\">"
            f"<text x=\"{LABEL_WIDTH - 6}\" y=\"12\" text-anchor=\"end\">{peak:,.1f}/s</text>"
            f"<text x=\"{LABEL_WIDTH - 6}\" y=\"{height}\" text-anchor=\"end\">0</text>"
            f"<g transform=\"translate({LABEL_WIDTH},0)\">"
            f"<rect width=\"{width}\" height=\"{height}\" fill=\"#f4f6f9\"/>"
            f"<polyline fill=\"none\" stroke=\"#1e88e5\" stroke-width=\"1.5\" points=\"{points}\"/></g>"
            f"{_axis(report, LABEL_WIDTH, height + 16, width)}</svg>")


def _table(table_id: str, columns: str, rows: list[list[str]]) -> str:
    """A table; `columns` names the columns, a leading '#' marks one of numbers (right-aligned).
    The cells are HTML already."""
    names = columns.split("|")
    numeric = [name.startswith("#") for name in names]
    head = "".join(f"<th class=\"n\">{escape(n[1:])}</th>" if num else f"<th>{escape(n)}</th>"
                   for n, num in zip(names, numeric))
    body = "".join("<tr>" + "".join(f"<td class=\"n\">{cell}</td>" if num else f"<td>{cell}</td>"
                                    for cell, num in zip(row, numeric)) + "</tr>" for row in rows)
    return f"<table id=\"{table_id}\"><tr>{head}</tr>{body}</table>"


def _failures(report: Report) -> str:
    if not report.error_groups:
        return "<p id=\"no-failures\">No failed attempt.</p>"
    rows = [[f"<code>{escape(g.error)}</code>", f"{g.attempts:,}", f"{g.items:,}",
             "".join(f"<details><summary>mini-batch {mb}</summary><pre>{escape(text)}</pre></details>"
                     for mb, text in g.examples)] for g in report.error_groups]
    more = (f"<p class=\"more\">{report.more_error_groups:,} more kinds of error not shown.</p>"
            if report.more_error_groups else "")
    return _table("failures-table", "error|#failures|#failed items|examples", rows) + more


def _slowest(report: Report) -> str:
    if not report.slowest:
        return "<p class=\"more\">No attempt lines.</p>"
    rows = [[f"{a.line.mini_batch:,}", escape(a.worker_key), escape(a.line.pod), str(a.line.attempt),
             _time(a.start), f"{a.line.seconds:,.2f}", f"{a.line.items:,}", escape(a.line.status)]
            for a in report.slowest]
    return _table("slowest-table", "#mini-batch|worker|pod|#attempt|start|#seconds|#items|status", rows)


def _idle(report: Report) -> str:
    if not report.workers:
        return "<p class=\"more\">No attempt lines.</p>"
    span = (report.end or 0) - (report.start or 0)
    rows = [[escape(w.key), f"{w.attempts:,}", f"{w.busy_seconds:,.1f}", f"{w.idle_seconds:,.1f}",
             f"{(w.idle_seconds / span if span else 0):.0%}"]
            for w in sorted(report.workers, key=lambda w: -w.idle_seconds)[:MAX_IDLE_ROWS]]
    return (f"<p class=\"sub\">Idle: the time from the run's first attempt to its last in which the worker ran no "
            f"mini-batch ({duration(span)} in all); the most idle first.</p>"
            + _table("idle-table", "worker|#attempts|#busy s|#idle s|#idle", rows))


def _resources(report: Report) -> str:
    if not report.resources:
        return "<p class=\"more\">No resource samples.</p>"
    rows = [[escape(p.pod), f"{p.samples:,}", _f(p.cpu_mean), _f(p.cpu_max), byte_size(p.rss_max),
             _f(p.gpu_util_mean), byte_size(p.gpu_memory_max), _spark(p.cpu_series)] for p in report.resources]
    return _table("resources-table", "pod|#samples|#CPU % mean|#CPU % peak|#memory peak|#GPU % mean|#GPU memory peak|"
                                     "CPU over time", rows)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def byte_size(value: float | None) -> str:
    """1536 → '1.5 KiB'; None → '-'."""
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:,.1f} {unit}" if unit != "B" else f"{value:,.0f} B"
        value /= 1024
    return f"{value:,.1f} TiB"


def _spark(points: list[tuple[float, float]]) -> str:
    if len(points) < 2:
        return ""
    width, height = 160, 24
    t0, t1 = points[0][0], points[-1][0]
    peak = max(v for _, v in points) or 1.0
    line = " ".join(f"{(t - t0) / ((t1 - t0) or 1) * width:.1f},{height - v / peak * (height - 2):.1f}"
                    for t, v in points)
    return (f"<svg width=\"{width}\" height=\"{height}\"><polyline fill=\"none\" stroke=\"#1e88e5\" "
            f"points=\"{line}\"/></svg>")


def _json(value) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2, default=str))}</pre>"
