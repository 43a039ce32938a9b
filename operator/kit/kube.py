"""The operator's own Kubernetes API calls: create and adopt children, write status.

kopf does the watching. The few writes the reconciler makes go through this small
aiohttp client, logged in with the same credentials as kopf (see `handlers.login`),
so it works in-cluster and with a kubeconfig alike, and never blocks the event loop.

What a failed call means is decided here, once (`ApiError.permanent`):

    permanent   400 BadRequest, 403 Forbidden (RBAC, a ResourceQuota, an admission policy,
                a namespace being deleted), 413 too large, 422 Invalid, 404 on a create whose
                namespace is gone: the same request fails the same way, so the run fails
    transient   no answer, 429 TooManyRequests, 5xx, and every other 404 or 409 (the callers
                handle those they expect: a 409 on create adopts): retried, after the server's
                Retry-After where it gave one
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
import kopf

_TIMEOUT = aiohttp.ClientTimeout(total=30)
_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
_KINDS = {"configmaps": "ConfigMap", "jobs": "Job", "secrets": "Secret", "pods": "Pod", "events": "Event",
          "batchinferencejobs": "BatchInferenceJob"}
# The statuses that retrying cannot fix, and the Failed condition's reason for each.
_PERMANENT = {400: "ApiRejected", 403: "Forbidden", 413: "ApiRejected", 422: "Invalid"}
_MESSAGE_LIMIT, _CAUSES_LIMIT = 1000, 10  # of a permanent error quoted in the status


@dataclass(frozen=True)
class Call:
    """What a call asked for, in RBAC's words: `verb` on `resource` (plural.group/subresource)."""

    verb: str
    kind: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @classmethod
    def of(cls, method: str, url_path: str, body: dict | None = None) -> Call:
        parts = url_path.split("?")[0].strip("/").split("/")  # api/v1/... or apis/GROUP/VERSION/...
        group = parts[1] if parts[0] == "apis" and len(parts) > 1 else ""
        rest, namespace = parts[3:] if group else parts[2:], None
        if rest[:1] == ["namespaces"] and len(rest) > 2:
            namespace, rest = rest[1], rest[2:]
        plural, name, subresource = ([*rest, None, None, None])[:3]
        assert plural is not None, f"{url_path} names no resource"  # path() names one
        if method == "POST":  # a create names its object in the body
            name, kind = ((body or {}).get("metadata") or {}).get("name"), (body or {}).get("kind")
        else:
            kind = None
        resource = (f"{plural}.{group}" if group else plural) + (f"/{subresource}" if subresource else "")
        return cls(_VERBS.get(method, method.lower()), kind or _KINDS.get(plural, plural), resource,
                   namespace, name, subresource)

    def __str__(self) -> str:
        target = f"{self.kind} {self.name}" if self.name else self.kind
        return f"{self.verb} {target}" + (f" ({self.subresource})" if self.subresource else "")


class ApiError(Exception):
    """A failed API call: `status` is the HTTP status, 0 when the server was not reached.

    `call` is what was asked, `details` the Status object's details (causes of a 422...),
    `retry_after` the seconds the server asked to wait (Retry-After), if it did.
    """

    def __init__(self, status: int, reason: str, message: str, call: Call | None = None,
                 details: dict | None = None, retry_after: float | None = None):
        super().__init__(f"{status} {reason}: {message}" + (f" ({call})" if call else ""))
        self.status, self.reason, self.message = status, reason, message
        self.call, self.details, self.retry_after = call, details or {}, retry_after

    @property
    def namespace_gone(self) -> bool:
        return (self.status == 404 and self.call is not None and self.call.verb == "create"
                and self.details.get("kind") == "namespaces")

    @property
    def permanent(self) -> bool:
        """Whether the same request would fail the same way: fail, do not retry (see the module's doc)."""
        return self.status in _PERMANENT or self.namespace_gone

    @property
    def failure_reason(self) -> str:
        """The Failed condition's reason for a permanent error: Forbidden, Invalid, else ApiRejected."""
        return _PERMANENT.get(self.status, "ApiRejected")

    def retry_delay(self, default: float) -> float:
        """How long to wait before asking again: the server's Retry-After, else `default`."""
        return self.retry_after if self.retry_after is not None else default

    def causes(self) -> list[dict]:
        """The Status object's details.causes: {type, message, field} each (what a 422 says was wrong)."""
        causes = self.details.get("causes")
        return [c for c in causes if isinstance(c, dict)] if isinstance(causes, list) else []

    def explain(self) -> str:
        """A permanent error for the status: the request, the API's answer, and where to look."""
        call = self.call or Call("call", "the Kubernetes API", "")
        answer = self.message if len(self.message) <= _MESSAGE_LIMIT else self.message[:_MESSAGE_LIMIT] + "..."
        text = f"the Kubernetes API refused to {call} ({self.status} {self.reason}): {answer}"
        where = f" in namespace {call.namespace}" if call.namespace else ""
        causes = [": ".join(filter(None, (c.get("field"), c.get("message")))) for c in self.causes()]
        causes = [c for c in causes if c]
        if self.status == 403 and any(c.get("type") == "NamespaceTerminating" for c in self.causes()):
            return f"{text}. Namespace {call.namespace} is being deleted"
        if self.status == 403:
            chart = ("rbac.secretNamespaces, or rbac.secretsInAllNamespaces" if call.resource == "secrets" else
                     "rbac.create, and watch.namespaces for the namespaced Roles")
            return (f"{text}. Check the operator's RBAC: its ServiceAccount needs '{call.verb}' on "
                    f"{call.resource}{where} (with the Helm chart: {chart}), or a policy of the namespace that "
                    f"refuses it (a ResourceQuota, an admission webhook)")
        if self.status == 422 and causes:
            return f"{text}. Rejected: " + "; ".join(causes[:_CAUSES_LIMIT]) + (
                f"; and {len(causes) - _CAUSES_LIMIT} more" if len(causes) > _CAUSES_LIMIT else "")
        if self.namespace_gone:
            return f"{text}. Namespace {call.namespace} does not exist (any more)"
        if self.status == 413:
            return f"{text}. The request is larger than the API server accepts"
        return text


def path(api_version: str, plural: str, namespace: str, name: str | None = None,
         subresource: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return "/".join(p for p in (prefix, "namespaces", namespace, plural, name, subresource) if p)


class KubeApi:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._proxy: str | None = None

    async def connect(self, info: kopf.ConnectionInfo) -> None:
        """Use these credentials from now on (kopf's login handler calls this on every login)."""
        old = self._session
        self._server, self._proxy = info.server.rstrip("/"), info.proxy_url
        self._session = aiohttp.ClientSession(
            headers={**info.as_http_headers(), "User-Agent": "parallelrun-operator"},
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
            timeout=_TIMEOUT, trust_env=info.trust_env)
        if old is not None:
            await old.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, url_path: str, body: dict | None = None,
                      content_type: str = "application/json") -> dict:
        call = Call.of(method, url_path, body)
        if self._session is None:
            raise ApiError(0, "NotLoggedIn", "the operator has not logged in to the cluster yet", call)
        try:
            async with self._session.request(method, self._server + url_path, proxy=self._proxy,
                                             data=None if body is None else json.dumps(body),
                                             headers={"Content-Type": content_type}) as response:
                text = await response.text()
                status = response.status
                retry_after = _seconds(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise ApiError(0, "Unreachable", f"{method} {url_path}: {str(e) or type(e).__name__}", call) from e
        if status >= 400:
            try:
                error = json.loads(text)
            except ValueError:
                error = {}
            error = error if isinstance(error, dict) else {}
            found = error.get("details")
            details = found if isinstance(found, dict) else {}
            if retry_after is None:
                retry_after = _seconds(details.get("retryAfterSeconds"))
            raise ApiError(status, error.get("reason") or "Error", error.get("message") or text[:300], call,
                           details, retry_after)
        return json.loads(text) if text else {}

    async def get(self, url_path: str) -> dict:
        return await self.request("GET", url_path)

    async def create(self, url_path: str, body: dict) -> dict:
        return await self.request("POST", url_path, body)

    async def merge_patch(self, url_path: str, patch: dict) -> dict:
        return await self.request("PATCH", url_path, patch, "application/merge-patch+json")


def _seconds(value) -> float | None:
    """A Retry-After in seconds (the form the API server sends), else None."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None
