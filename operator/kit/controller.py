"""The controller loop every kind shares, and what one look at a resource needs.

A kind's controller subclasses `Controller`: `start` once (the spec, credentials, what
must exist first), then `step` at every wake-up or when `next_look` says, until the
resource has finished; `stop` at the end, whatever ended it. The kit creates or adopts
children (a second create meets 409 and adopts the child of the same name, made before
a restart), writes the status only when it changed, posts Events, and turns API faults
into the resource's policy: a passing fault is retried (kopf.TemporaryError), a refusal
fails the resource.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import copy
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, overload

import kopf

from parallelrun.runner.api import API_VERSION, KINDS, Kind

from . import metrics
from .children import Owner
from .clock import Clock
from .conditions import FAILED, PENDING, SPEC_CHANGE_REFUSED, with_phase, with_spec_check
from .credentials import secret_env
from .kube import ApiError, KubeApi, path

_PLURALS = {"ConfigMap": ("v1", "configmaps"), "Job": ("batch/v1", "jobs"),
            **{kind.kind: (API_VERSION, kind.plural) for kind in KINDS}}


class RunFailed(kopf.PermanentError):
    """The run cannot succeed; `reason` becomes the Failed condition's reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Services:
    """What the operator shares between all resources (kept in kopf's memo)."""

    api: KubeApi
    default_image: str | None = None
    local_storage: bool = False  # specs may name the operator's own filesystem (shared_storage.py)


class Wakeups:
    """One event per running resource, set when its pods, Jobs or spec change.

    `ended` counts the drives that ended by uid, `finished` those that returned: a resource
    whose drive returned has finished, and nothing of it runs again."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.ended: collections.Counter[str] = collections.Counter()
        self.finished: collections.Counter[str] = collections.Counter()

    def wake(self, uid: str) -> None:
        if uid in self._events:
            self._events[uid].set()

    async def drive(self, uid: str, controller: Controller) -> None:
        """Drive the resource's controller, woken by `wake(uid)`."""
        try:
            await controller.drive(self._events.setdefault(uid, asyncio.Event()))
            self.finished[uid] += 1
        finally:
            self._events.pop(uid, None)
            self.ended[uid] += 1


class Controller(abc.ABC):
    """What every resource's driver does alike: create or adopt children, write status, post Events.

    A subclass names its resource's `kind` and the label (`uid_label`) that marks its children.
    """

    kind: Kind
    uid_label: str
    retry_seconds: float = 30  # after a passing fault: storage or API unreachable, secret not there yet

    def __init__(self, body, services: Services, logger: logging.LoggerAdapter | logging.Logger | None = None,
                 clock: Clock | None = None):
        self.body = body  # kopf's live view: spec and generation stay current
        self.clock = clock or Clock()
        self.logger = logger or logging.LoggerAdapter(logging.getLogger(__name__), {})
        self.owner = Owner.of(self.kind, body)
        self.api, self.services = services.api, services
        self.status = copy.deepcopy(dict(body.get("status") or {}))
        self._written = copy.deepcopy(self.status)
        self._spec_check: tuple[int | None, str | None] | None = None  # (generation, refusal)

    @property
    def generation(self) -> int | None:
        return self.body["metadata"].get("generation")

    async def drive(self, wake: asyncio.Event) -> None:
        """Take the resource to its end: `start`, then `step` at every wake-up (or at `next_look`)
        until it says done; raises kopf.TemporaryError to be retried."""
        try:
            await self.start()
            while True:
                wake.clear()
                started = time.monotonic()
                done = await self.step()
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
                if done:
                    return
                await self.clock.sleep_until(self.next_look(), wake)
        except RunFailed as failure:
            await self.fail(failure.reason, str(failure))
        except ApiError as e:
            if not e.permanent:  # unreachable, 429, 5xx...: the same request may pass later
                raise self._retry_later(e, "Kubernetes API") from e
            await self.fail(e.failure_reason, e.explain())  # 403, 422...: it would fail the same way again
        finally:
            await self.stop()

    @abc.abstractmethod
    async def start(self) -> None:
        """Everything before the first look: the spec, credentials, what must exist first."""

    @abc.abstractmethod
    async def step(self) -> bool:
        """One look at the resource; True when it has finished."""

    def next_look(self) -> datetime | None:
        """When to look again without a wake-up; None: after the clock's resync interval."""
        return None

    async def stop(self) -> None:  # noqa: B027 - a hook: most controllers have nothing to stop
        """What ends with the drive, however it ended."""

    def _refusal(self) -> str | None:
        """Why the spec as it is now is not run (it changed after the run started), or None."""
        return None

    def _check_spec(self, status: dict) -> dict:
        """`status` with SpecChangeRefused set while the spec differs from the run's."""
        if self._spec_check is None or self._spec_check[0] != self.generation:
            self._spec_check = (self.generation, self._refusal())
        refusal = self._spec_check[1]
        if refusal and not any(c.get("type") == SPEC_CHANGE_REFUSED for c in status.get("conditions") or []):
            self._event("Warning", SPEC_CHANGE_REFUSED, refusal)
        return with_spec_check(status, refusal, self.generation)

    async def fail(self, reason: str, message: str) -> None:
        """Failed with `reason`; where the API refuses that status for good, say so in the log and stop."""
        self._event("Warning", reason, message)
        try:
            await self._write(with_phase(self.status, FAILED, reason, message, self.generation))
        except ApiError as e:
            if e.status == 404:  # the resource is gone (its namespace with it?): nobody to tell
                self.logger.warning("the run failed (%s: %s), but the resource is gone", reason, message)
                return
            if not e.permanent:
                raise self._retry_later(e, "cannot write the Failed status yet") from e
            refusal = e.explain()
            self.logger.error(
                "the run stopped, and its Failed status cannot be written: the resource will not show it, and "
                "it is not retried. Fix this, then restart the operator: %s%s", refusal,
                "" if refusal == message else f" (it failed with {reason}: {message})")

    @overload
    async def _credentials(self, storage: dict, wait: Literal[True] = True) -> dict[str, str]: ...
    @overload
    async def _credentials(self, storage: dict, wait: bool) -> dict[str, str] | None: ...

    async def _credentials(self, storage: dict, wait: bool = True) -> dict[str, str] | None:
        """The storage credentials of `storage`'s secretRef; never the operator's own.

        A missing Secret: wait for it (Pending), or with wait=False, None.
        """
        name = (storage.get("secretRef") or {}).get("name")
        if not name:
            return {}
        try:
            return secret_env(await self.api.get(path("v1", "secrets", self.owner.namespace, name)))
        except ApiError as e:
            if e.status != 404:
                raise
        if not wait:
            return None
        message = f"waiting for Secret {name} (spec.storage.secretRef) to exist; next look in {self.retry_seconds}s"
        await self._write(with_phase(self.status, PENDING, "WaitingForSecret", message, self.generation))
        raise kopf.TemporaryError(message, delay=self.retry_seconds)

    def _check_ours(self, child: dict) -> None:
        if (child["metadata"].get("labels") or {}).get(self.uid_label) != self.owner.uid:
            raise kopf.TemporaryError(
                f"{child.get('kind', 'object')} {child['metadata']['name']} belongs to another resource "
                "(an earlier one of the same name, still being deleted?); waiting for it to go",
                delay=self.retry_seconds)

    async def _ensure(self, manifest: dict) -> dict:
        """Create `manifest`, or adopt the one of the same name made earlier for this resource."""
        api_version, plural = _PLURALS[manifest["kind"]]
        collection = path(api_version, plural, self.owner.namespace)
        try:
            return await self.api.create(collection, manifest)
        except ApiError as e:
            if e.status != 409:
                raise
        existing = await self.api.get(f"{collection}/{manifest['metadata']['name']}")
        self._check_ours(existing)
        return existing

    async def _write(self, status: dict) -> None:
        self.status = status
        if status == self._written:
            return
        await self.api.merge_patch(path(API_VERSION, self.kind.plural, self.owner.namespace, self.owner.name, "status"),
                                   {"status": merge_patch(self._written, status)})
        self._written = copy.deepcopy(status)

    def _retry_later(self, e: ApiError, what: str) -> kopf.TemporaryError:
        """A passing API fault, retried after the server's Retry-After (sooner when it did not answer)."""
        return kopf.TemporaryError(f"{what}: {e}", delay=e.retry_delay(self.retry_seconds if e.status else 10))

    def _event(self, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event, and the same in the operator's log (k8s_skip: not posted twice by kopf)."""
        kopf.event(self.body, type=type_, reason=reason, message=message)
        level = logging.INFO if type_ == "Normal" else logging.WARNING
        self.logger.log(level, "%s: %s", reason, message, extra={"k8s_skip": True})


def merge_patch(old: dict, new: dict) -> dict:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: a key `new` no longer has is
    sent as null, or the server would keep it."""
    patch: dict = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        patch[key] = merge_patch(before, value) if isinstance(value, dict) and isinstance(before, dict) else value
    return patch


async def refuse_change_after_finish(kind: Kind, body, api: KubeApi) -> None:
    """A finished run of `kind` whose spec was edited: say that nothing will run again."""
    generation = body["metadata"].get("generation")
    status = dict(body.get("status") or {})
    if generation is None or status.get("observedGeneration") in (None, generation):
        return
    refusal = (f"the run is {status.get('phase')}; a changed spec is not run again. To run it, create a new "
               f"{kind.kind}, or delete and re-create this one")
    kopf.event(body, type="Warning", reason=SPEC_CHANGE_REFUSED, message=refusal)
    owner = Owner.of(kind, body)
    await api.merge_patch(path(API_VERSION, kind.plural, owner.namespace, owner.name, "status"),
                          {"status": with_spec_check(status, refusal, generation)})
