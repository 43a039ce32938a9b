"""A module that is not installed, as the one-line fix that installs it.

Which extra provides which package is pyproject.toml's `optional-dependencies`, read
from the installed distribution's metadata: kopf is in `operator`, adlfs in `azure`.
"""

from __future__ import annotations

import re

_REQUIREMENT = re.compile(r"""^\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;.*\bextra\s*==\s*['"]([^'"]+)['"]""")
_AGGREGATES = ("test", "bench")  # extras that only gather the others


def missing_module(e: BaseException) -> str | None:
    """The top-level name of the module whose absence raised `e` (or what `e` was raised from)."""
    seen = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            return cause.name.split(".")[0]
        cause = cause.__cause__ or cause.__context__
    return None


def extra_of(module: str) -> str | None:
    """The extra of parallelrun that installs `module`, or None."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        requirements = requires("parallelrun") or []
    except PackageNotFoundError:
        return None
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match and match.group(2) not in _AGGREGATES and _import_name(match.group(1)) == module:
            return match.group(2)
    return None


def install_hint(e: BaseException, *, any_module: bool = False, needed_for: str = "",
                 module: str | None = None) -> str | None:
    """`e` as "NAME is not installed (needed for ...); pip install ..." when a module is
    missing (`module` where `e` does not name it): one of an extra of parallelrun, or
    (`any_module`) any other. None otherwise."""
    module = missing_module(e) or module
    if module is None:
        return None
    extra = extra_of(module)
    if extra is None and not any_module:
        return None
    need = f" (needed for {needed_for})" if needed_for else ""
    package = f"'parallelrun[{extra}]'" if extra else module
    return f"{module} is not installed{need}; pip install {package}"


def _import_name(distribution: str) -> str:
    return re.sub(r"[-.]+", "_", distribution).lower()
