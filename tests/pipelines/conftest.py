"""The chart tests' helpers (crd_validation, resource_cases) for the PipelineRun CRD tests."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "chart"))
