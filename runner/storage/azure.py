"""Azure Blob Storage (az://, abfs://, abfss:// through adlfs): everything Azure-specific
behind the filesystem interface. Its credential variables, a job's credentials kept apart
from the operator's own, its faults as one line each, and requests retried for a bounded
time (PARALLELRUN_STORAGE_RETRY_SECONDS, default 30) with a warning per retry instead of
azure-core's silent minutes; a 403 is never retried.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from .faults import StorageError, StorageRefused, StorageUnavailable, first_line, short_cause
from .redaction import redact

log = logging.getLogger("parallelrun.storage")

AZURE = ("az", "abfs", "abfss")
# Secret keys (the names Azure's own tools read) → adlfs options.
AZURE_OPTIONS = {
    "AZURE_STORAGE_CONNECTION_STRING": "connection_string",
    "AZURE_STORAGE_ACCOUNT_NAME": "account_name",
    "AZURE_STORAGE_ACCOUNT_KEY": "account_key",
    "AZURE_STORAGE_SAS_TOKEN": "sas_token",
    "AZURE_STORAGE_CLIENT_ID": "client_id",
    "AZURE_STORAGE_CLIENT_SECRET": "client_secret",
    "AZURE_STORAGE_TENANT_ID": "tenant_id",
}
RETRY_SECONDS_VARIABLE = "PARALLELRUN_STORAGE_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 30.0
CREDENTIALS_FIX = "check the credentials in {variables} or the Secret named by spec.storage.secretRef"


class CredentialConflict(RuntimeError):
    """Explicit credentials were given while the process has its own in its environment."""


def check_isolated(uri: str, env: Mapping[str, str]) -> None:
    """adlfs fills every option it is not given from os.environ (a connection string
    there beats an explicit account key), so a job's secret could be silently replaced
    by the operator's own credentials. Refuse rather than use the wrong ones."""
    clashing = sorted(k for k in AZURE_OPTIONS if os.environ.get(k) and k not in env)
    if clashing:
        raise CredentialConflict(f"this process has {', '.join(clashing)} set, which would override the job's "
                                 f"storage credentials for {uri}; remove it from the operator's environment")


def credential_variables() -> str:
    """The Azure credential variables this process has set (names only), for the advice."""
    names = [k for k in AZURE_OPTIONS if os.environ.get(k)]
    return " / ".join(names) if names else "AZURE_STORAGE_CONNECTION_STRING"


def classify(e: BaseException, where: str | None) -> StorageError | None:
    """An Azure SDK or adlfs exception as a StorageError, or None."""
    if isinstance(e, ValueError) and str(e).startswith("unable to connect to account for"):  # adlfs' do_connect
        detail = str(e)[len("unable to connect to account for"):].strip()
        uri = where or "az://"
        if detail.startswith("Must provide"):
            return StorageRefused(f"no Azure Storage credentials for {uri}: set AZURE_STORAGE_CONNECTION_STRING "
                                  "(or AZURE_STORAGE_ACCOUNT_NAME with a key, SAS token or service principal); "
                                  "on Kubernetes, name a Secret in spec.storage.secretRef")
        return StorageRefused(f"the Azure Storage credentials for {uri} are not usable ({first_line(detail)}): "
                              + CREDENTIALS_FIX.format(variables=credential_variables()))
    if not type(e).__module__.startswith("azure."):
        return None
    return _classify_sdk(e, where)


def _classify_sdk(e: BaseException, where: str | None) -> StorageError | None:
    from azure.core import exceptions as ax

    response = getattr(e, "response", None)
    url = getattr(e, "parallelrun_url", None) or strip_query(getattr(getattr(response, "request", None), "url", ""))
    endpoint = (getattr(e, "parallelrun_endpoint", None) or getattr(response, "parallelrun_endpoint", None)
                or _endpoint_of(url))
    uri = where or _az_uri(url, endpoint) or endpoint or "Azure Storage"
    status = getattr(e, "status_code", None)
    code = _error_code(e)
    if isinstance(e, ax.ClientAuthenticationError) or (isinstance(e, ax.HttpResponseError) and status in (401, 403)):
        advice = CREDENTIALS_FIX.format(variables=credential_variables())
        if status is None:  # raised before sending: the key cannot sign (not base64, ...)
            target = f" for {where or _az_uri(url, endpoint)}" if where or _az_uri(url, endpoint) else ""
            return StorageRefused(f"cannot sign Azure Storage requests{target} "
                                  f"({first_line(getattr(e, 'message', None) or str(e))}): {advice}")
        extra = ("; the identity needs a data role such as Storage Blob Data Contributor"
                 if code == "AuthorizationPermissionMismatch" else "")
        return StorageRefused(f"Azure Storage refused access to {uri} ({status} {code or 'AuthorizationFailure'}): "
                              + advice + extra)
    if isinstance(e, ax.ResourceNotFoundError) and code == "ContainerNotFound":
        container = _container_of(uri)
        return StorageRefused(f"Azure Storage container {container!r} does not exist ({uri}); "
                              "create it or fix the URI")
    attempts = getattr(e, "parallelrun_attempts", None) or getattr(response, "parallelrun_attempts", None)
    after = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
    if isinstance(e, (ax.ServiceRequestError, ax.ServiceResponseError)):
        return StorageUnavailable(f"cannot reach Azure Storage at {endpoint or 'its endpoint'} for {uri}{after}: "
                                  f"{short_cause(e)}; check the account name/endpoint and the network")
    if isinstance(e, ax.HttpResponseError) and status is not None and status >= 500:
        return StorageUnavailable(f"Azure Storage at {endpoint or 'its endpoint'} failed with {status} "
                                  f"{code or ''}".rstrip() + f" for {uri}{after}; try again later")
    return None


def _error_code(e: BaseException) -> str | None:
    code = getattr(e, "error_code", None)
    if code is None:
        response = getattr(e, "response", None)
        code = getattr(response, "headers", {}).get("x-ms-error-code") if response is not None else None
    return getattr(code, "value", code) if code is not None else None


def strip_query(url: str | None) -> str:
    """A URL without its query string (where a SAS token would be)."""
    return (url or "").split("?", 1)[0].split("#", 1)[0]


def _endpoint_of(url: str) -> str | None:
    """The account endpoint of a blob URL: https://ACCOUNT.blob.core.windows.net, or an
    emulator's path-style http://HOST:PORT/ACCOUNT."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.netloc:
        return None
    base = f"{parts.scheme}://{parts.netloc}"
    if _path_style(parts.hostname or ""):
        account = parts.path.lstrip("/").split("/", 1)[0]
        return f"{base}/{account}" if account else base
    return base


def _path_style(host: str) -> bool:
    """Whether the account name is in the path (Azurite, an IP address, localhost), not the host."""
    return host in ("localhost", "azurite") or host.replace(".", "").isdigit() or ":" in host or "." not in host


def _az_uri(url: str, endpoint: str | None) -> str | None:
    """az://container/blob for a blob URL."""
    if not url:
        return None
    endpoint = endpoint or _endpoint_of(url)
    if endpoint and url.startswith(endpoint.rstrip("/") + "/"):
        rest = url[len(endpoint.rstrip("/")) + 1:]
        return f"az://{unquote(rest)}" if rest else None
    return None


def _container_of(uri: str) -> str:
    rest = uri.split("://", 1)[-1]
    return rest.split("@", 1)[0].split("/", 1)[0] if "://" in uri else rest.split("/", 1)[0]


# -- bounded retries ---------------------------------------------------------------------


def retry_seconds() -> float:
    """How long one Azure request may be retried: PARALLELRUN_STORAGE_RETRY_SECONDS, default 30."""
    raw = os.environ.get(RETRY_SECONDS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_RETRY_SECONDS
    try:
        value = float(raw)
        if value < 0 or value != value:
            raise ValueError
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %g", RETRY_SECONDS_VARIABLE, raw, DEFAULT_RETRY_SECONDS)
        return DEFAULT_RETRY_SECONDS
    return value


def retry_waits(budget: float) -> list[float]:
    """The waits before each retry: 1, 2, 4, 8, 8... seconds, as many as fit in `budget`."""
    waits, total, wait = [], 0.0, 1.0
    while total + wait <= budget:
        waits.append(wait)
        total += wait
        wait = min(wait * 2, 8.0)
    return waits


@functools.cache
def _bounded_retry_class():
    from azure.storage.blob.aio import ExponentialRetry

    class BoundedRetry(ExponentialRetry):
        """azure-storage-blob's retry (connection errors, 408, 5xx; never 4xx such as 403),
        ending once `budget` seconds are spent, with a warning before each retry."""

        def __init__(self, budget: float, endpoint: str):
            self.waits = retry_waits(budget)
            super().__init__(initial_backoff=1, increment_base=2, retry_total=len(self.waits), random_jitter_range=0)
            self.connect_retries = self.read_retries = self.status_retries = len(self.waits)
            self.budget, self.endpoint = budget, endpoint
            self.connect_timeout = min(20.0, max(2.0, budget / 3))  # a dropped SYN must not take 20 s a try

        def configure_retries(self, request):
            request.context.options.setdefault("connection_timeout", self.connect_timeout)
            settings = super().configure_retries(request)
            settings.update(started=time.monotonic(), failures=0, wait=0.0)
            return settings

        def get_backoff_time(self, settings) -> float:
            return settings.get("wait", 0.0)

        def increment(self, settings, request, response=None, error=None) -> bool:
            retry = super().increment(settings, request, response=response, error=error)
            settings["failures"] += 1
            failures = settings["failures"]
            if retry:
                wait = self.waits[min(failures, len(self.waits)) - 1] * random.uniform(0.75, 1.0)
                if time.monotonic() - settings["started"] + wait > self.budget + 1.0:  # slow attempts (timeouts)
                    retry = False
                else:
                    settings["wait"] = wait
            for failed in (error, response):  # for storage_error: how often, and where
                if failed is not None:
                    with contextlib.suppress(AttributeError):
                        failed.parallelrun_attempts = failures
                        failed.parallelrun_endpoint = self.endpoint
                        failed.parallelrun_url = strip_query(getattr(request, "url", ""))
            if retry:
                answered = f"{getattr(response, 'status_code', '?')} {getattr(response, 'reason', '')}".rstrip()
                what = (f"storage unreachable ({short_cause(error)})" if error is not None
                        else f"storage answered {answered}")
                log.warning("%s, retrying (attempt %d/%d in %.0fs): %s", redact(what), failures + 1,
                            len(self.waits) + 1, settings["wait"], self.endpoint)
            return retry

    return BoundedRetry


_bounding_lock = threading.Lock()


def bound_retries(fs) -> None:
    """Give an adlfs filesystem's client the bounded retry policy (adlfs passes no retry
    options to azure-storage-blob, whose default retries a dead endpoint for minutes).

    The policy sits in the client's pipeline, which every container and blob client
    made from it shares; it is swapped in place (once per client and budget)."""
    client = getattr(fs, "service_client", None)
    if client is None:
        return
    budget = retry_seconds()
    try:
        cls = _bounded_retry_class()
        with _bounding_lock:
            config, policies = client._config, client._pipeline._impl_policies
            current = config.retry_policy
            if isinstance(current, cls) and current.budget == budget:
                return
            index = next(i for i, p in enumerate(policies) if p is current)
            endpoint = strip_query(getattr(client, "primary_endpoint", "") or getattr(client, "url", "")).rstrip("/")
            bounded = cls(budget, endpoint)
            bounded.next = current.next
            if index:
                policies[index - 1].next = bounded
            policies[index] = bounded
            config.retry_policy = bounded
    except (ImportError, AttributeError, StopIteration) as e:  # another azure-storage-blob: its own retries
        log.debug("cannot bound the Azure retries of %r: %s", fs, e)
