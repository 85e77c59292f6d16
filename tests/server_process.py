"""Start a real server process (or an app in a thread of this process) for a test, wait until
it answers, and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

# Start-up loads a model: seconds here, several times that on a slow, busy machine. Only a
# server that will never answer should reach this.
STARTUP_S = 300.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def tail(path: Path, chars: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-chars:]


@contextlib.contextmanager
def running_server(command: Sequence[str], ready_url: str, log: Path, *,
                   startup_s: float = STARTUP_S, env: dict[str, str] | None = None
                   ) -> Iterator[subprocess.Popen]:
    """Run ``command`` until ``ready_url`` answers 200; fail with the log's tail if it exits
    or does not answer in time. Terminated (then killed) on exit."""
    import pytest

    environment = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    with open(log, "wb") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT,
                                   env=environment)
    try:
        deadline = time.monotonic() + startup_s
        while not answers(ready_url):
            if process.poll() is not None:
                pytest.fail(f"{command[0]} exited with code {process.returncode}:\n"
                            f"{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"{ready_url} did not answer within {startup_s} s:\n{tail(log)}")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serving_in_thread(app, *, startup_s: float = STARTUP_S) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a thread of this process; yields its root URL.
    Its socket is bound before the thread starts, so no other process can take the port."""
    import pytest
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_s
        while not server.started:
            if not thread.is_alive():
                pytest.fail("the server thread ended before it started serving")
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not start within {startup_s} s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@contextlib.contextmanager
def embedded_llama_server(log_dir: Path, n_ctx: int = 4096) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the embedded model, in its own process;
    yields its base URL (ending in /v1). Skips where the server or the model is missing."""
    import sys

    import pytest

    from ttscale.engines.embedded import embedded_model_path
    from ttscale.errors import ModelLoadError

    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    try:
        model_path = embedded_model_path()
    except ModelLoadError as exc:
        pytest.skip(str(exc))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
               "--n_threads", "2"]
    with running_server(command, f"{base_url}/models", log_dir / "llama_server.log"):
        yield base_url
