"""Where data lives: filesystems and credentials (filesystems.py), atomic writes
(atomic.py), fetching (fetching.py), storage faults in one line (faults.py), secrets kept
out of messages (redaction.py), and Azure Blob behind the same interface (azure.py).
The runner and the operator take storage from here."""

from .atomic import create_if_absent, open_atomic, remove_stale_temporaries, write_atomic
from .azure import RETRY_SECONDS_VARIABLE, CredentialConflict, retry_seconds, retry_waits
from .faults import StorageError, StorageRefused, StorageUnavailable, storage_error
from .fetching import fetch
from .filesystems import (
                          as_fsspec,
                          display_path,
                          filesystem,
                          filesystem_modules,
                          is_local,
                          join,
                          protocol_of,
                          storage_options,
                          strip_protocol,
)
from .temporaries import temporary_name

__all__ = ["RETRY_SECONDS_VARIABLE", "CredentialConflict", "StorageError", "StorageRefused", "StorageUnavailable",
           "as_fsspec", "create_if_absent", "display_path", "fetch", "filesystem", "filesystem_modules", "is_local",
           "join", "open_atomic", "protocol_of", "remove_stale_temporaries", "retry_seconds", "retry_waits",
           "storage_error", "storage_options", "strip_protocol", "temporary_name", "write_atomic"]
