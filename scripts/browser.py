"""The dashboard in a subprocess and Debian's Chromium: what the browser benchmarks and the
end-to-end tests share.

:func:`dashboard_server` runs ``streamlit run dashboard/Home.py`` on a free local port and yields
its URL once it answers; :data:`CHROMIUM` and :data:`CHROMIUM_ARGS` launch the system browser
through Playwright (never a downloaded one).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_SECONDS = 90


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dashboard_server(
    env: dict[str, str] | None = None,
    log: IO[bytes] | int = subprocess.DEVNULL,
    options: Sequence[str] = (),
    startup_seconds: float = STARTUP_SECONDS,
) -> Iterator[str]:
    """``streamlit run dashboard/Home.py`` on a free port (``options``: more ``--flag value``
    pairs, ``log``: where its output goes); yields its URL once ``/_stcore/health`` answers and
    stops it afterwards. ``RuntimeError`` if it exits or is not healthy within
    ``startup_seconds``."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", "dashboard/Home.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        *options,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=dict(os.environ) if env is None else env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited early (status {process.returncode})")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit not healthy after {startup_seconds:g} s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
