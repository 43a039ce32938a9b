"""The package laid out as it is installed, for tools that cannot follow pyproject's package-dir.

In a source checkout parallelrun's sub-packages live in runner/ and operator/ (pyproject's
package-dir), which neither grimp (import-linter) nor mypy follows, and operator/ has no
__init__.py on purpose (parallelrun/__init__.py): they would see neither. Those tools run on
a temporary folder that lays the package out as installed, a link per source file.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"parallelrun": ROOT / "parallelrun", "parallelrun/runner": ROOT / "runner",
            "parallelrun/operator": ROOT / "operator"}


def installed_layout(target: Path) -> Path:
    """`target`/parallelrun/, every folder a regular package, each module a link to its source."""
    for name, source in PACKAGES.items():
        for path in source.rglob("*.py"):
            link = target / name / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
        init = target / name / "__init__.py"
        if not init.exists():  # operator/: a namespace in the source, a package to the tools
            init.touch()
    return target
