"""Credentials never appear in a message: the secrets this process has, and those given
explicitly (a job's Secret, in the operator), are masked in every storage error."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping

_SECRET_VARIABLES = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
                     "AZURE_STORAGE_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

_SECRET_OPTIONS = ("connection_string", "account_key", "sas_token", "client_secret", "secret", "token")

_SECRET_FIELDS = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey|sig|client_secret|password)"
                            r"=([^;&\s'\"]+)")

_remembered: set[str] = set()

_remembered_lock = threading.Lock()


def remember_secrets(options: Mapping[str, str]) -> None:
    """Secrets given explicitly (a job's Secret, in the operator), to keep them out of messages."""
    values = {str(options[k]) for k in _SECRET_OPTIONS if options.get(k)}
    if values:
        with _remembered_lock:
            _remembered.update(values)


def redact(text: str) -> str:
    text = _SECRET_FIELDS.sub(lambda m: f"{m.group(1)}=***", text)
    with _remembered_lock:
        secrets = set(_remembered)
    secrets.update(os.environ[k] for k in _SECRET_VARIABLES if os.environ.get(k))
    for secret in list(secrets):  # a connection string's key or signature may show up alone
        secrets.update(m.group(2) for m in _SECRET_FIELDS.finditer(secret))
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return text
