"""Storage credentials from a Secret: the variables fsspec reads them from."""

from __future__ import annotations

import base64
from collections.abc import Mapping


def secret_env(secret: Mapping) -> dict[str, str]:
    """A Secret's data as the variables fsspec credentials are read from."""
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
