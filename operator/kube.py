"""The operator's own Kubernetes API calls: create and adopt children, write status.

kopf does the watching. The few writes the reconciler makes go through this small
aiohttp client, logged in with the same credentials as kopf (see `handlers.login`),
so it works in-cluster and with a kubeconfig alike, and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import kopf

_TIMEOUT = aiohttp.ClientTimeout(total=30)


class ApiError(Exception):
    """A failed API call: `status` is the HTTP status, 0 when the server was not reached."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


def path(api_version: str, plural: str, namespace: str, name: str | None = None,
         subresource: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [prefix, "namespaces", namespace, plural] + ([name] if name else []) + ([subresource] if subresource else [])
    return "/".join(parts)


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
        if self._session is None:
            raise ApiError(0, "NotLoggedIn", "the operator has not logged in to the cluster yet")
        try:
            async with self._session.request(method, self._server + url_path, proxy=self._proxy,
                                             data=None if body is None else json.dumps(body),
                                             headers={"Content-Type": content_type}) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise ApiError(0, "Unreachable", f"{method} {url_path}: {str(e) or type(e).__name__}") from e
        if status >= 400:
            try:
                error = json.loads(text)
            except ValueError:
                error = {}
            raise ApiError(status, error.get("reason") or "Error", error.get("message") or text[:300])
        return json.loads(text) if text else {}

    async def get(self, url_path: str) -> dict:
        return await self.request("GET", url_path)

    async def create(self, url_path: str, body: dict) -> dict:
        return await self.request("POST", url_path, body)

    async def merge_patch(self, url_path: str, patch: dict) -> dict:
        return await self.request("PATCH", url_path, patch, "application/merge-patch+json")
