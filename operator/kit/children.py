"""The one policy for the children of every kind: their names, labels and owner reference.

A child is `<owner>-<suffix>`: deterministic, so an operator that restarts finds what it
made instead of making it twice (a second create meets 409 and adopts). It carries the
owner's labels (the watch selects on `app.kubernetes.io/managed-by`) and a controller
owner reference, so deleting the resource deletes its children.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from parallelrun.runner.api import (
    API_VERSION,
    APP_NAME,
    LABEL_APP_NAME,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    Kind,
)

NAME_LIMIT = 52  # a Job's pods append "-<index>-<5 characters>" within a hostname's 63
LABEL_VALUE_LIMIT = 63
_DIGEST = 8


def child_name(owner: str, suffix: str) -> str:
    """`<owner>-<suffix>`; past NAME_LIMIT the owner's name is cut and a hash of the whole marks
    it, the suffix kept whole while it leaves room for a part of the owner's name."""
    full = f"{owner}-{suffix}"
    if len(full) <= NAME_LIMIT:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_DIGEST]
    room = NAME_LIMIT - len(suffix) - _DIGEST - 2
    if room < _DIGEST:  # a long suffix: the whole is cut
        return f"{full[:NAME_LIMIT - _DIGEST - 1].rstrip('-.')}-{digest}"
    return f"{owner[:room].rstrip('-.')}-{digest}-{suffix}"


def label_value(text: str) -> str:
    """`text` as a label value: cut with a hash of itself past 63 characters."""
    if len(text) <= LABEL_VALUE_LIMIT:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{text[:LABEL_VALUE_LIMIT - 7].rstrip('-._')}-{digest}"


@dataclass(frozen=True)
class Owner:
    """A resource of ours, as its children name and reference it."""

    kind: Kind
    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, kind: Kind, body) -> Owner:
        meta = body["metadata"]
        return cls(kind, meta["name"], meta["namespace"], meta["uid"])

    def child_name(self, suffix: str) -> str:
        return child_name(self.name, suffix)

    def labels(self, component: str, name_label: str, uid_label: str) -> dict:
        """The labels of a child: ours, its component, and the owner's name and uid under the kind's labels."""
        return {LABEL_APP_NAME: APP_NAME, LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: component,
                name_label: label_value(self.name), uid_label: self.uid}

    def reference(self) -> dict:
        """The controller owner reference of every child."""
        return {"apiVersion": API_VERSION, "kind": self.kind.kind, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}

    def metadata(self, name: str, labels: dict, annotations: dict | None = None) -> dict:
        return {"name": name, "namespace": self.namespace, "labels": labels, "annotations": dict(annotations or {}),
                "ownerReferences": [self.reference()]}
