"""Several viewer hosts behind a real nginx, configured as docs/scaling.md says.

Three ``mnist-live view`` processes on 127.0.0.2, .3 and .4 stand in for three hosts. Each
subscribes to one broker, and nginx on 127.0.0.1 runs the documentation's own configuration
block in front of them. Sessions opened through nginx land on every backend, each complete and
live. When one backend is killed, a reloaded page is served by another.
"""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from pathlib import Path

import pytest
from bokeh.client import pull_session

from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from tests.conftest import Programs, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import nginx_front

pytestmark = pytest.mark.slow

BACKENDS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def sessions_on(backend: str, port: int) -> int:
    with urllib.request.urlopen(f"http://{backend}:{port}/healthz", timeout=5) as reply:
        return int(json.load(reply)["sessions"])


def healthy(backend: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{backend}:{port}/healthz", timeout=2) as reply:
            return bool(json.load(reply)["hub"]["receiving"])
    except OSError:
        return False


def serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as page:
            return page.status == 200
    except OSError:
        return False


def loss_rows(session) -> int:
    source = session.document.get_model_by_name("loss")
    return len(source.data["step"]) if source is not None else 0


@pytest.mark.skipif(
    nginx_front.NGINX is None, reason="needs Debian's nginx (apt-get install nginx)"
)
def test_sessions_spread_over_viewer_hosts_behind_nginx_and_survive_one_dying(
    programs: Programs, tmp_path: Path
) -> None:
    chosen: set[int] = set()
    for _ in range(3):  # the page's port, nginx's, the broker's --in: none twice
        chosen.add(free_tcp_port(avoid=chosen))
    port, listen, in_port = sorted(chosen)
    out_port = free_tcp_port_pair(avoid=chosen)
    broker_in, broker_out = f"tcp://127.0.0.1:{in_port}", f"tcp://127.0.0.1:{out_port}"
    programs.start("broker", "--in", broker_in, "--out", broker_out)
    view = ["view", "--connect", broker_out, "--port", str(port), "--use-xheaders"]
    view += ["--allow-origin", f"127.0.0.1:{listen}"]
    views = {backend: programs.start(*view, "--address", backend) for backend in BACKENDS}
    programs.start(
        "train", "--connect", broker_in, "--dataset", "synthetic", "--synthetic-size",
        "2000,500", "--steps-per-second", "20", "--quiet",
    )  # fmt: skip
    for backend in BACKENDS:
        wait_until(lambda b=backend: healthy(b, port), 30, message=f"the viewer on {backend}")
    nginx = nginx_front.start(tmp_path, listen, [f"{b}:{port}" for b in BACKENDS])
    url = f"http://127.0.0.1:{listen}/"
    opened = []
    try:
        wait_until(lambda: nginx.poll() is not None or serves(url), 10, message="nginx")
        assert nginx.poll() is None, nginx.stderr.read().decode() if nginx.stderr else ""
        for _ in range(6):
            with urllib.request.urlopen(url, timeout=10) as page:  # the page, then its socket
                assert page.status == 200 and b"MNIST Live" in page.read()
            opened.append(pull_session(url=url))
        spread = {backend: sessions_on(backend, port) for backend in BACKENDS}
        assert all(n >= 1 for n in spread.values()), f"sessions per backend: {spread}"
        assert all(loss_rows(s) > 0 for s in opened), "every page holds the run so far"
        assert all(s.document.get_model_by_name("header") is not None for s in opened)

        dead = BACKENDS[0]
        assert programs.stop(views[dead], signal.SIGKILL) != 0
        before = {b: sessions_on(b, port) for b in BACKENDS[1:]}
        reloaded = []
        for _ in range(3):  # round-robin reaches the dead host once: nginx moves on
            with urllib.request.urlopen(url, timeout=10) as page:
                assert page.status == 200
            reloaded.append(pull_session(url=url))
        opened += reloaded
        assert all(loss_rows(s) > 0 for s in reloaded), "a reloaded page is whole at once"
        after = {b: sessions_on(b, port) for b in BACKENDS[1:]}
        assert sum(after.values()) >= sum(before.values()) + 3, (before, after)
    finally:
        for session in opened:
            session.close()
        nginx_front.stop(nginx)
