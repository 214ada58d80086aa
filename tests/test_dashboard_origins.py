"""A dashboard served for other machines accepts the page's websocket from the origins it names
(--allow-websocket-origin) and refuses any other: a websocket handshake on 127.0.0.1 whose Origin
header is the remote browser's."""
from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.sweep_fixture import make_sweep
from tests.test_dashboard_browser import free_port

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a dashboard server in its own process


@pytest.fixture(scope="module")
def remote_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    make_sweep(root, "fake", {"baseline": "finished"})
    port = free_port()
    log = root / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dashboards", "--results", str(root), "--address", "0.0.0.0",
                                 "--port", str(port), "--allow-websocket-origin", "gpu-box:5006"],
                                cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def handshake(port: int, origin: str) -> str:
    """The status line of a websocket upgrade of /ws sent with `origin`."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request.encode())
        return conn.recv(4096).decode(errors="replace").splitlines()[0]


def test_the_named_origin_is_accepted_and_another_refused(remote_server):
    assert " 101 " in handshake(remote_server, "http://gpu-box:5006")
    assert " 403 " in handshake(remote_server, "http://elsewhere:5006")
