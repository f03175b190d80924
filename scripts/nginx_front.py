"""nginx in front of several viewers, configured by docs/scaling.md's own block.

The test suite (``tests/test_nginx.py``) and ``bench_fanout.py --via-nginx`` both run the
documented configuration, with their own addresses, inside a main configuration that keeps
every file nginx writes in one directory, so nothing outside it is touched and no root is
needed.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
"""Debian's nginx, where it is installed (``apt-get install nginx``)."""


def documented_config() -> str:
    text = (ROOT / "docs" / "scaling.md").read_text()
    match = re.search(r"<!-- nginx-viewers -->\s*```nginx\n(.*?)```", text, re.S)
    if match is None:
        raise ValueError("docs/scaling.md lost its nginx configuration")
    return match.group(1)


def nginx_conf(directory: Path, listen: int, backends: list[str], connections: int = 256) -> str:
    """The documented block with these addresses, inside a main config of its own."""
    block = documented_config()
    servers = [line for line in block.splitlines() if re.match(r"\s+server \S+:\d+ ", line)]
    if len(servers) != 3:
        raise ValueError("the documented upstream no longer names three viewer hosts")
    options = servers[0].split(None, 2)[2]  # max_fails=... fail_timeout=...;
    ours = "\n".join(f"    server {backend} {options}" for backend in backends)
    block = block.replace("\n".join(servers), ours)
    block = block.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    indented = "\n".join(f"    {line}" if line else line for line in block.splitlines())
    return (
        f"worker_processes 1;\ndaemon off;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'};\n"
        f"worker_rlimit_nofile {4 * connections};\n"
        f"events {{ worker_connections {connections}; }}\n"
        f"http {{\n    access_log {directory / 'access.log'};\n{temp}\n{indented}\n}}\n"
    )


def start(directory: Path, listen: int, backends: list[str], connections: int = 256):
    """nginx on 127.0.0.1:``listen`` in front of ``backends``; stop it with :func:`stop`."""
    if NGINX is None:
        raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
    conf = directory / "nginx.conf"
    conf.write_text(nginx_conf(directory, listen, backends, connections))
    return subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop(nginx: subprocess.Popen) -> None:
    """Graceful quit, then kill if it lingers."""
    if nginx.poll() is None:
        nginx.send_signal(signal.SIGQUIT)
    try:
        nginx.wait(10)
    except subprocess.TimeoutExpired:
        nginx.kill()
        nginx.wait()
