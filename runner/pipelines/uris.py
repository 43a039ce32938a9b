"""Relative URIs in pipeline and component files: taken relative to the file's folder."""

from __future__ import annotations

import os
import posixpath
import re

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)(.*)$")


def join_uri(base_dir: str | None, uri: str) -> str:
    """`uri` as is when it is absolute, has a scheme or there is no base; else under `base_dir`.

    `base_dir` may itself be a URL (a component read from az://...), joined with `/`.
    A trailing `/` (a folder) is kept.
    """
    if base_dir is None or _SCHEME.match(uri) or os.path.isabs(uri):
        return uri
    trailing = "/" if uri.endswith("/") else ""
    url = _SCHEME.match(base_dir)
    if url:
        return url.group(1) + posixpath.normpath(posixpath.join(url.group(2), uri)) + trailing
    return os.path.normpath(os.path.join(base_dir, uri)) + trailing
