"""The filesystem serving a URI: a local path without fsspec (localfs.py), anything else
through fsspec, with credentials from the environment or given explicitly.

Credentials are never part of a spec. In a pod they arrive as environment variables
(the secret named by `spec.storage.secretRef`, mounted with envFrom); the operator,
which serves many jobs in one process, passes the same secret's data explicitly.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..extras import install_hint
from ..localfs import LOCAL_PROTOCOLS, LocalFS, local_path
from .azure import AZURE, AZURE_OPTIONS, bound_retries, check_isolated
from .faults import StorageRefused, first_line, storage_error
from .redaction import remember_secrets
from .temporaries import public_name

if TYPE_CHECKING:
    import fsspec

# Secret keys (the names Azure's and AWS's own tools read) → fsspec options.
_OPTIONS = {
    AZURE: AZURE_OPTIONS,
    ("s3", "s3a"): {
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_ENDPOINT_URL": "endpoint_url",
    },
}


def protocol_of(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def storage_options(uri: str, env: Mapping[str, str] | None = None) -> dict:
    """fsspec options for `uri` from credential variables (default: this process's env)."""
    env = os.environ if env is None else env
    for protocols, names in _OPTIONS.items():
        if protocol_of(uri) in protocols:
            return {opt: env[key] for key, opt in names.items() if env.get(key)}
    return {}


def filesystem_modules(uri: str) -> tuple[str, ...]:
    """The modules `filesystem(uri)` will import: a worker's zygote imports them once, so
    that a worker does not (adlfs and the Azure SDK: 0.7-1 s), after the plan arrived."""
    if local_path(uri) is not None:
        return ()
    return ("fsspec", "adlfs") if protocol_of(uri) in AZURE else ("fsspec",)


def filesystem(uri: str, env: Mapping[str, str] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem serving `uri` and the path inside it (no protocol, no trailing /).

    `env` holds explicit credentials (a job's secret, in the operator); None means
    this process's environment (a pod, local mode)."""
    if env is not None and protocol_of(uri) in AZURE:
        check_isolated(uri, env)
    if (path := local_path(uri)) is not None:  # without importing fsspec (localfs.py)
        return _LOCAL, path
    options = storage_options(uri, env)
    remember_secrets(options)
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
    except ImportError as e:  # the protocol's package (adlfs, s3fs...) is not installed
        hint = (install_hint(e, any_module=True, needed_for=f"{protocol_of(uri)}://", module=_package_of(uri))
                or first_line(str(e)))
        raise StorageRefused(f"{public_name(uri)}: {hint}") from e
    except ValueError as e:  # adlfs: no or malformed credentials; fsspec: a scheme nobody serves
        if str(e).startswith("Protocol not known"):
            raise StorageRefused(f"{public_name(uri)}: no storage is known for the scheme {protocol_of(uri)}://; use "
                                 "a local path, file://, az:// or abfs:// (parallelrun[azure]), s3:// (s3fs), gs:// "
                                 "(gcsfs) or another fsspec scheme") from e
        error = storage_error(e, uri)
        if error is None:
            raise
        raise error from e
    if protocol_of(uri) in AZURE:
        bound_retries(fs)
    return fs, path.rstrip("/") or path


_LOCAL = LocalFS()


def _package_of(uri: str) -> str | None:
    """The package fsspec loads for the scheme of `uri` (s3fs for s3://), as its registry names it."""
    from fsspec.registry import known_implementations

    return known_implementations.get(protocol_of(uri), {}).get("class", "").split(".")[0] or None


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether `fs` is the local disk: a LocalFS, or fsspec's LocalFileSystem."""
    if isinstance(fs, LocalFS):  # asked per file by readers: the common answer first
        return True
    return ((fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)) == LOCAL_PROTOCOLS


def as_fsspec(fs):
    """`fs` as an fsspec filesystem, for a library that takes one (pyarrow's datasets):
    a LocalFS is fsspec's LocalFileSystem there."""
    return fs.fsspec() if isinstance(fs, LocalFS) else fs


def strip_protocol(uri: str) -> str:
    """The path of `uri` inside its filesystem, as filesystem() gives it."""
    if (path := local_path(uri)) is not None:
        return path
    import fsspec

    return fsspec.get_filesystem_class(protocol_of(uri))._strip_protocol(uri)


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def display_path(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """`path` as a user wrote it: a local path as it is, an Azure blob as az://container/..."""
    if is_local(fs):
        return path
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "az" in protocols:
        return f"az://{path.lstrip('/')}"
    return fs.unstrip_protocol(path)
