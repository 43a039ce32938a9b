"""The pods of every kind: one container named `runner`, under the restricted Pod Security Standard.

Every pod the operator makes runs once (Kubernetes retries with a new pod), as a non-root
user with a read-only root filesystem and a scratch volume to write to; its termination
message is read back; the storage credentials arrive as environment variables.
"""

from __future__ import annotations

from parallelrun.runner.contract import SCRATCH_ENV, TERMINATION_LOG

CONTAINER = "runner"
SPEC_DIR = "/etc/parallelrun"
SCRATCH_DIR = "/scratch"
NON_ROOT_ID = 65532  # the conventional "nonroot" user of distroless images


def exit_rule(action: str, codes: list[int]) -> dict:
    return {"action": action, "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": codes}}


# A node drained or a pod preempted is nobody's fault: retried without counting.
DISRUPTION_RULE = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}

POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": NON_ROOT_ID,
    "runAsGroup": NON_ROOT_ID,
    "fsGroup": NON_ROOT_ID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def scratch_env() -> list[dict]:
    """Where a pod with a read-only root filesystem writes: its scratch volume."""
    return [{"name": SCRATCH_ENV, "value": SCRATCH_DIR},
            {"name": "TMPDIR", "value": SCRATCH_DIR},  # the root filesystem is read-only
            {"name": "HOME", "value": SCRATCH_DIR},  # libraries that write ~/.cache, ~/.config
            {"name": "XDG_CACHE_HOME", "value": f"{SCRATCH_DIR}/.cache"}]


def with_user_env(env: list[dict], user_env: list[dict] | None) -> list[dict]:
    """`env`, then the user's variables, which win."""
    user_env = list(user_env or [])
    user_names = {e.get("name") for e in user_env}
    return [e for e in env if e["name"] not in user_names] + user_env


def restricted_pod(container: dict, volumes: list[dict], service_account: str | None = None) -> dict:
    """A pod spec under the restricted Pod Security Standard, run once (Kubernetes retries with a new pod)."""
    pod = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [container],
        "volumes": volumes,
    }
    if service_account:
        pod["serviceAccountName"] = service_account
    else:
        pod["automountServiceAccountToken"] = False  # the runner never calls the API
    return pod


def restricted_container(image: str | None, command: list[str], env: list[dict], mounts: list[dict],
                         env_from: list[dict], storage: dict) -> dict:
    """The `runner` container: restricted, its termination message read back, storage credentials as env."""
    container = {
        "name": CONTAINER,
        "image": image,
        "command": command,
        "env": env,
        "volumeMounts": mounts,
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    secret = (storage.get("secretRef") or {}).get("name")
    if secret:
        env_from = [*env_from, {"secretRef": {"name": secret}}]
    if env_from:
        container["envFrom"] = env_from
    return container
