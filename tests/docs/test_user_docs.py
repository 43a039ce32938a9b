"""The user docs stand alone in a clone: every path they name is in the repository, none
points outside it, and internals (modules, benchmark figures) stay in docs/architecture.md
and bench/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USER_DOCS = [ROOT / "README.md", ROOT / "examples" / "README.md",
             *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "architecture.md")]
ALL_DOCS = [*USER_DOCS, ROOT / "docs" / "architecture.md"]
TOP_LEVEL = {p.name for p in ROOT.iterdir() if not p.name.startswith(".git")}
GENERATED = ("/output/", "work/")  # what running the examples writes


def named_paths(doc: Path):
    """Repository paths the page names: `code` spans that are paths, and Markdown links."""
    text = doc.read_text()
    for token in re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)#\s]+)", text):
        if "://" in token or "<" in token or "*" in token or token.startswith(("/", "~", "-", "$")):
            continue
        first = token.split("/")[0]
        if ("/" in token or token.endswith(".md")) and (first in TOP_LEVEL or (doc.parent / first).exists()
                                                        or first == ".."):
            yield token


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_page_names_is_in_the_repository(doc):
    missing = []
    for token in named_paths(doc):
        if any(part in token for part in GENERATED):
            continue
        here = ROOT / token if token.split("/")[0] in TOP_LEVEL else doc.parent / token
        if not here.resolve().is_relative_to(ROOT) or not here.exists():
            missing.append(token)
    assert missing == []


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_sends_users_outside_the_repository(doc):
    text = doc.read_text()
    assert "DESIGN.md" not in text and "../shared" not in text


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_leave_internals_to_the_architecture_page(doc):
    """No module of the runner or the operator, no benchmark script or figure."""
    text = doc.read_text()
    assert re.findall(r"(?<![\w/])(?:runner|operator|bench)/[\w/]+\.py\b", text) == []
    assert "## Speed" not in text and "py-spy" not in text


def test_the_reference_is_linked_from_the_readme():
    assert "`docs/reference.md`" in (ROOT / "README.md").read_text()
