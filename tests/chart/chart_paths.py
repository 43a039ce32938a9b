"""Where the chart tests find things, and the release they render."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "parallelrun"
RELEASE, NAMESPACE = "rel", "ops"
