"""The runner-operator contract (DESIGN.md, "Runner contract"): what a pod and the operator agree on.

The operator builds the pods (operator/manifests.py) and reads what they leave
(operator/aggregation.py, operator/progress.py); the runner runs in them
(runner/__main__.py). Both sides take these values from here, so neither can change
one alone.

    exit codes        EXIT_OK 0 shard done; EXIT_CONFIG 2 bad configuration or user code
                      that cannot load (not retried); EXIT_THRESHOLD 3 this shard alone
                      exceeds a threshold (the Job fails at once); EXIT_RETRY 1, and any
                      other code, a crash: Kubernetes retries the index, the retry resumes
    termination log   TERMINATION_LOG: the counts as JSON, and `reason` when it failed
    progress files    Layout.progress(shard): the counts so far, every PROGRESS_PUBLISH_SECONDS
    code folder       CODE_DIR: where a spec.code.configMap is mounted (CODE_DIR_ENV overrides)
    scratch           SCRATCH_ENV: the pod's writable folder for fetched code, model, inputs
    OpenAI key        OPENAI_API_KEY_ENV: the key of spec.code.openai.apiKey.secretKeyRef, from its Secret

Retry policy is a type: an error that retrying cannot fix derives from PermanentError
and exits with its `exit_code`; anything else is a crash, which Kubernetes retries.
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_RETRY = 1  # a passing fault (storage unreachable): Kubernetes retries the index
EXIT_CONFIG = 2
EXIT_THRESHOLD = 3

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4000  # Kubernetes keeps 4096 bytes of a termination message

CODE_DIR = "/var/run/parallelrun/code"
CODE_DIR_ENV = "PARALLELRUN_CODE_DIR"
SCRATCH_ENV = "PARALLELRUN_SCRATCH"
OPENAI_API_KEY_ENV = "PARALLELRUN_OPENAI_API_KEY"

PROGRESS_PUBLISH_SECONDS = 10.0  # how often a scoring pod rewrites its progress file

URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")  # a URI names its storage; anything else is a path


class PermanentError(Exception):
    """A runner error that retrying cannot fix: an invalid spec, input that cannot be
    planned, code that cannot load, a storage refusal. A pod exits with `exit_code`
    (Kubernetes does not retry it), local mode stops with it, the operator fails the run."""

    exit_code = EXIT_CONFIG
