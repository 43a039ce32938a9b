"""Which URIs a spec may name on a cluster: the operator reads and writes only storage it shares with the pods.

The operator is one pod serving every resource; its filesystem is neither the user's
nor the scoring pods'. A field the operator itself reads or writes (it plans from
input.uri or input.manifest, writes the plan under output.uri, reads component files,
writes a pipeline's reuse index and a schedule's manifests under workdir, lists a data
trigger's uri, fingerprints code, model and side inputs for allowReuse) must name
shared storage: a local path or file:// would be the operator pod's own filesystem
(`input.uri: /etc/` once planned it and Succeeded). A field only the pods read (code,
model, side inputs) may name an absolute path inside their image or on a volume they
mount. memory:// is one process's memory: never shared, refused everywhere. Local
mode takes all of them.

`parallelrun operator --local-storage` admits local paths and file:// for the
operator's own fields, for a cluster whose operator and pods mount the same volume at
the same path (a one-node development cluster).
"""

from __future__ import annotations

import posixpath

from parallelrun.runner.contract import URI_SCHEME
from parallelrun.runner.localfs import local_path
from parallelrun.runner.storage import protocol_of

SHARED_EXAMPLE = "a URL of storage the operator and the pods share, such as az://container/path/"


def uri_problem(field: str, uri: str | None, *, operator_reads: bool, local_storage: bool = False) -> str | None:
    """Why `uri` in spec field `field` cannot work on the cluster, as "field: problem; fix", or None.

    `operator_reads`: the operator reads or writes it itself, not only the pods.
    A value with a `${{...}}` expression is judged once substituted (in the child it becomes).
    """
    if not uri or "${{" in uri:
        return None
    if protocol_of(uri) == "memory":
        return (f"{field}: {uri!r} is memory:// storage, which lives in one process and is shared with no pod; "
                f"use {SHARED_EXAMPLE}")
    if not URI_SCHEME.match(uri) and not posixpath.isabs(uri):
        return (f"{field}: {uri!r} is a relative path, which means nothing on a cluster; use {SHARED_EXAMPLE}"
                + ("" if operator_reads else " or an absolute path inside the image or on a mounted volume"))
    if operator_reads and not local_storage and local_path(uri) is not None:
        return (f"{field}: {uri!r} is a path on the operator's own filesystem, which it would read or write "
                f"instead of the pods' data; use {SHARED_EXAMPLE} (or start the operator with --local-storage "
                "where it and the pods mount the same volume at the same path)")
    return None
