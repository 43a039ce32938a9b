"""Azurite (the npm package `azurite`): Azure Blob Storage on this machine, for the azure tests.

`azurite_blob()` finds `azurite-blob` on PATH or in the cache folder, installing it
there with npm when it is in neither; `Azurite.start()` runs it on a free port of
127.0.0.1 with its data in a folder of its own, so leftover or parallel instances
never collide.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "parallelrun" / "azurite"
PACKAGE = "azurite@3"
INSTALL_TIMEOUT = 240  # seconds; a fresh install takes about 30
START_TIMEOUT = 30

# Azurite's well-known development account (the same in every Azurite; public, not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# The variables adlfs (and runner/storage.py) take Azure credentials from.
CREDENTIAL_VARIABLES = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY",
                        "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_ID", "AZURE_STORAGE_CLIENT_SECRET",
                        "AZURE_STORAGE_TENANT_ID", "AZURE_STORAGE_ANON")


class AzuriteUnavailable(RuntimeError):
    """Azurite is neither installed nor installable here (no node, npm or registry)."""


def _cached_binary() -> Path:
    return CACHE / "node_modules" / ".bin" / "azurite-blob"


def azurite_blob() -> str:
    """The path of `azurite-blob`, installed into the cache folder with npm if needed."""
    found = shutil.which("azurite-blob")
    if found:
        return found
    binary = _cached_binary()
    if binary.exists():
        return str(binary)
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise AzuriteUnavailable("node and npm are needed to install Azurite (npm install azurite@3)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / "azurite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time across parallel sessions
        if binary.exists():
            return str(binary)
        command = [npm, "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
                   "--loglevel=error", "--prefix", str(CACHE), PACKAGE]
        env = dict(os.environ, npm_config_yes="true", npm_config_update_notifier="false")
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=INSTALL_TIMEOUT, env=env)
        except subprocess.TimeoutExpired:
            raise AzuriteUnavailable(f"`{' '.join(command)}` did not finish in {INSTALL_TIMEOUT}s") from None
        if result.returncode != 0 or not binary.exists():
            output = (result.stderr or result.stdout).strip()[-2000:]
            raise AzuriteUnavailable(f"`{' '.join(command)}` failed (exit {result.returncode}): {output}")
    return str(binary)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test session dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _has_telemetry(binary: str) -> bool:
    """Whether this Azurite sends usage data over the network unless given --disableTelemetry
    (recent 3.x do; older ones neither send it nor know the option)."""
    script = Path(os.path.realpath(binary))  # npm's bin link → azurite/dist/src/blob/main.js
    if script.suffix == ".js":
        return any("disableTelemetry" in p.read_text(errors="replace") for p in script.parent.glob("*.js"))
    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60).stdout
    return "--disableTelemetry" in help_text


@dataclass
class Azurite:
    process: subprocess.Popen
    port: int
    location: Path

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.blob_endpoint};")

    @classmethod
    def start(cls, binary: str, location: Path, attempts: int = 5, in_memory: bool = False,
              debug_log: Path | None = None) -> Azurite:
        """Start azurite-blob on a free port; retry on another port if that one was taken meanwhile.

        in_memory: keep no data on disk, `location` holds only the log (Azurite rewrites its
        whole database file as it grows, which makes writing tens of thousands of blobs slow).
        debug_log: Azurite's debug log, a line `RequestMethod=... RequestURL=...` per request."""
        location.mkdir(parents=True, exist_ok=True)
        extra = ["--disableTelemetry"] if _has_telemetry(binary) else []
        extra += ["--inMemoryPersistence"] if in_memory else ["--location", str(location)]
        extra += ["--debug", str(debug_log)] if debug_log else []
        last = ""
        for _ in range(attempts):
            port = free_port()
            log_path = location / f"azurite-{port}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--skipApiVersionCheck",
                     "--silent", *extra],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and process.poll() is None:
                if _answers(port):
                    return cls(process, port, location)
                time.sleep(0.1)
            stop(process)
            last = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"azurite-blob did not start after {attempts} attempts; its last output:\n{last}")

    def stop(self) -> None:
        stop(self.process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def start_for_tests(location: Path) -> Azurite:
    """Azurite for a test session: skipped where it cannot be had, except under CI=true,
    where that is an error (CI must run the Azure tests)."""
    import pytest

    try:
        binary = azurite_blob()
    except AzuriteUnavailable as e:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI=true and Azurite cannot be installed: {e}", pytrace=False)
        pytest.skip(f"Azurite is not available: {e}")
    return Azurite.start(binary, location)
