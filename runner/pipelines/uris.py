"""Relative URIs in pipeline and component files: taken relative to the file's folder."""

from __future__ import annotations

import os
import posixpath

from ..contract import URI_SCHEME


def join_uri(base_dir: str | None, uri: str) -> str:
    """`uri` as is when it is absolute, has a scheme or there is no base; else under `base_dir`.

    `base_dir` may itself be a URL (a component read from az://...), joined with `/`.
    A trailing `/` (a folder) is kept.
    """
    if base_dir is None or URI_SCHEME.match(uri) or os.path.isabs(uri):
        return uri
    trailing = "/" if uri.endswith("/") else ""
    scheme = URI_SCHEME.match(base_dir)
    if scheme:
        return scheme.group() + posixpath.normpath(posixpath.join(base_dir[scheme.end():], uri)) + trailing
    return os.path.normpath(os.path.join(base_dir, uri)) + trailing
