"""Where data lives: fsspec filesystems, credentials, atomic writes and fetching.

Credentials are never part of a spec. In a pod they arrive as environment variables
(the secret named by `spec.storage.secretRef`, mounted with envFrom); the operator,
which serves many jobs in one process, passes the same secret's data explicitly.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from collections.abc import Mapping

import fsspec
from fsspec.implementations.local import LocalFileSystem

# Secret keys (the names Azure's and AWS's own tools read) → fsspec options.
_AZURE = ("az", "abfs", "abfss")
_OPTIONS = {
    _AZURE: {
        "AZURE_STORAGE_CONNECTION_STRING": "connection_string",
        "AZURE_STORAGE_ACCOUNT_NAME": "account_name",
        "AZURE_STORAGE_ACCOUNT_KEY": "account_key",
        "AZURE_STORAGE_SAS_TOKEN": "sas_token",
        "AZURE_STORAGE_CLIENT_ID": "client_id",
        "AZURE_STORAGE_CLIENT_SECRET": "client_secret",
        "AZURE_STORAGE_TENANT_ID": "tenant_id",
    },
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


class CredentialConflict(RuntimeError):
    """Explicit credentials were given while the process has its own in its environment."""


def _check_isolated(uri: str, env: Mapping[str, str]) -> None:
    """adlfs fills every option it is not given from os.environ (a connection string
    there beats an explicit account key), so a job's secret could be silently replaced
    by the operator's own credentials. Refuse rather than use the wrong ones."""
    if protocol_of(uri) not in _AZURE:
        return
    clashing = sorted(k for k in _OPTIONS[_AZURE] if os.environ.get(k) and k not in env)
    if clashing:
        raise CredentialConflict(f"this process has {', '.join(clashing)} set, which would override the job's "
                                 f"storage credentials for {uri}; remove it from the operator's environment")


def filesystem(uri: str, env: Mapping[str, str] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem serving `uri` and the path inside it (no protocol, no trailing /).

    `env` holds explicit credentials (a job's secret, in the operator); None means
    this process's environment (a pod, local mode)."""
    if env is not None:
        _check_isolated(uri, env)
    fs, path = fsspec.core.url_to_fs(uri, **storage_options(uri, env))
    return fs, path.rstrip("/") or path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Publish `data` at `path` whole or not at all.

    An object store's single put is atomic already; on a local or mounted disk the
    bytes go to a temporary name in the same folder and are renamed into place.
    """
    if is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4().hex}-{os.path.basename(path)}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def fetch(uri: str, dest: str) -> str:
    """A local path holding `uri` (file or folder): local paths as they are, remote ones copied under `dest`."""
    fs, path = filesystem(uri)
    if is_local(fs):
        if not fs.exists(path):
            raise FileNotFoundError(f"{uri}: no such file or folder")
        return path
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such file or folder")
    target = os.path.join(dest, posixpath.basename(path) or "data")
    if os.path.exists(target):
        shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    if fs.isdir(path):
        fs.get(path + "/", target + "/", recursive=True)
    else:
        fs.get(path, target)
    return target
