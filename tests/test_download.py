"""Downloads from real HTTP mirrors on 127.0.0.1 serving files the tests make.

Each mirror is a standard-library HTTP server in a thread on a free loopback port. Offline is
played by a closed port (refused at once), a listener whose queue is full (the connection
attempt hangs, as with an unroutable host) and a listener that never answers (the request
hangs). No traffic leaves the machine.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tqdm import tqdm

from protocol.endpoints import free_tcp_port
from tests.conftest import REPO, make_idx_dir
from trainer.datasets import load_dataset
from trainer.download import CHECKSUMS, DownloadError, fetch, file_md5, mirrors_for
from trainer.idx import DatasetError

NAMES = tuple(CHECKSUMS["mnist"])


class Mirror:
    """Serves ``directory`` over HTTP on 127.0.0.1 and counts the requests."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        handler = functools.partial(Handler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def mirrors(tmp_path: Path) -> Iterator:
    """Factory: ``mirrors(name)`` makes a directory of four small MNIST-format files and serves
    it; the second value is the files' MD5s, standing in for the published ones."""
    started: list[Mirror] = []

    def make(name: str, n_train: int = 30) -> tuple[Mirror, dict[str, str]]:
        directory = make_idx_dir(tmp_path / "served" / name, n_train=n_train, n_test=10)
        mirror = Mirror(directory)
        started.append(mirror)
        return mirror, {file: file_md5(directory / file) for file in NAMES}

    yield make
    for mirror in started:
        mirror.close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("MNIST_LIVE_CACHE", str(path))
    monkeypatch.delenv("MNIST_LIVE_MIRROR", raising=False)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@contextlib.contextmanager
def listener(backlog: int) -> Iterator[tuple[socket.socket, str]]:
    """A bare TCP listener on a free loopback port and its URL; nothing answers unless told."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        yield sock, f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()


def test_fetch_downloads_verifies_and_the_loader_finds_it(mirrors, cache: Path) -> None:
    mirror, sums = mirrors("a")
    directory = fetch("mnist", mirrors=(mirror.url,), checksums=sums, progress=False)
    assert directory == cache / "mnist"
    assert leftovers(directory) == sorted(NAMES)  # no temporary files
    for file in NAMES:
        assert (directory / file).read_bytes() == (mirror.directory / file).read_bytes()
    dataset = load_dataset("auto")
    assert dataset.name == "mnist" and not dataset.synthetic
    assert dataset.train_images.shape == (30, 28, 28)


def test_valid_files_are_kept_and_force_fetches_again(mirrors, cache: Path) -> None:
    mirror, sums = mirrors("a")
    fetch("mnist", mirrors=(mirror.url,), checksums=sums, progress=False)
    assert len(mirror.requests) == 4
    fetch("mnist", mirrors=(mirror.url,), checksums=sums, progress=False)
    assert len(mirror.requests) == 4
    fetch("mnist", mirrors=(mirror.url,), checksums=sums, progress=False, force=True)
    assert len(mirror.requests) == 8


def test_damaged_cached_file_is_replaced(mirrors, cache: Path) -> None:
    mirror, sums = mirrors("a")
    target = cache / "mnist" / NAMES[0]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"half a download")
    fetch("mnist", mirrors=(mirror.url,), checksums=sums, progress=False)
    assert file_md5(target) == sums[NAMES[0]]


def test_checksum_mismatch_leaves_no_file(mirrors, cache: Path) -> None:
    mirror, sums = mirrors("a")
    wrong = {**sums, NAMES[0]: "0" * 32}
    with pytest.raises(DownloadError, match=f"{NAMES[0]} has MD5 {sums[NAMES[0]]}") as caught:
        fetch("mnist", mirrors=(mirror.url,), checksums=wrong, progress=False)
    message = str(caught.value)
    assert "no network" not in message and "\n" not in message
    assert f"copy the four MNIST .gz files into {cache / 'mnist'}" in message
    assert leftovers(cache / "mnist") == []


def test_connection_cut_mid_file_leaves_no_file(cache: Path) -> None:
    """A server that promises 1,000 bytes, sends 10 and hangs up."""
    with listener(4) as (sock, url):
        sock.settimeout(5)

        def serve_once() -> None:
            connection, _ = sock.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + bytes(10))

        server = threading.Thread(target=serve_once, daemon=True)
        server.start()
        try:
            with pytest.raises(DownloadError, match="closed after 10 of 1000 bytes"):
                fetch("mnist", mirrors=(url,), progress=False)
        finally:
            server.join(5)
    assert leftovers(cache / "mnist") == []


def test_a_bad_mirror_falls_back_to_the_next(mirrors, cache: Path) -> None:
    bad, _ = mirrors("bad", n_train=31)  # other content: every checksum differs
    good, sums = mirrors("good")
    fetch("mnist", mirrors=(bad.url, good.url), checksums=sums, progress=False)
    assert len(bad.requests) == 4 and len(good.requests) == 4
    for file in NAMES:
        assert file_md5(cache / "mnist" / file) == sums[file]


def test_missing_file_and_oversized_file(mirrors, cache: Path) -> None:
    mirror, sums = mirrors("a")
    with pytest.raises(DownloadError, match=f"{NAMES[0]} is \\d+ bytes, too big"):
        fetch("mnist", mirrors=(mirror.url,), checksums=sums, progress=False, max_bytes=100)
    (mirror.directory / NAMES[0]).unlink()
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch("mnist", mirrors=(mirror.url,), checksums=sums, progress=False)
    assert leftovers(cache / "mnist") == []


def test_mirror_from_the_environment(mirrors, cache: Path, monkeypatch) -> None:
    mirror, sums = mirrors("a")
    monkeypatch.setenv("MNIST_LIVE_MIRROR", mirror.url)
    assert mirrors_for("mnist") == (mirror.url,)
    fetch("fashion-mnist", checksums=sums, progress=False)
    assert leftovers(cache / "fashion-mnist") == sorted(NAMES)
    assert load_dataset("fashion-mnist").class_names[0] == "T-shirt/top"


def test_progress_bar_draws_on_request(mirrors, cache: Path, capfd) -> None:
    mirror, sums = mirrors("a")
    fetch("mnist", mirrors=(mirror.url,), checksums=sums, progress=True)
    err = capfd.readouterr().err
    size = (mirror.directory / NAMES[0]).stat().st_size
    whole = tqdm.format_sizeof(size)
    assert f"{NAMES[0]}: 100%" in err and f"{whole}/{whole}" in err, err


def assert_offline_error(message: str, seconds: float, limit: float) -> None:
    assert message.startswith("cannot download mnist (no network?: ")
    assert message.endswith("or pass --dataset /path/to/dir")
    assert "\n" not in message
    assert seconds < limit, f"took {seconds:.2f} s"


def test_offline_closed_port_fails_at_once(cache: Path) -> None:
    url = f"http://127.0.0.1:{free_tcp_port()}/"
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch("mnist", mirrors=(url, url), progress=False)
    assert_offline_error(str(caught.value), time.monotonic() - started, limit=2)
    assert "Connection refused" in str(caught.value)
    assert leftovers(cache / "mnist") == []


def test_offline_connect_that_hangs_times_out(cache: Path) -> None:
    """A listener with a full queue drops new connection attempts, like an unroutable host."""
    with (
        listener(0) as (sock, url),
        socket.create_connection(sock.getsockname(), timeout=2),  # fills the queue
    ):
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            fetch("mnist", mirrors=(url, url), timeout=0.5, progress=False)
        assert_offline_error(str(caught.value), time.monotonic() - started, limit=3)
        assert "timed out" in str(caught.value)
    assert leftovers(cache / "mnist") == []


def test_server_that_never_answers_times_out(cache: Path) -> None:
    with listener(8) as (_, url):  # the kernel accepts; nobody ever reads or answers
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            fetch("mnist", mirrors=(url,), timeout=0.5, progress=False)
        assert_offline_error(str(caught.value), time.monotonic() - started, limit=2)
        assert "timed out" in str(caught.value)
    assert leftovers(cache / "mnist") == []


def test_load_dataset_with_download_offline_raises_a_dataset_error(cache, monkeypatch) -> None:
    monkeypatch.setenv("MNIST_LIVE_MIRROR", f"http://127.0.0.1:{free_tcp_port()}/")
    with pytest.raises(DatasetError, match="cannot download mnist"):
        load_dataset("mnist", download=True)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "protocol.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_fetch_offline_prints_one_line(tmp_path: Path) -> None:
    env = {
        "MNIST_LIVE_CACHE": str(tmp_path),
        "MNIST_LIVE_MIRROR": f"http://127.0.0.1:{free_tcp_port()}/",
    }
    started = time.monotonic()
    result = run_cli("data", "fetch", "mnist", env=env)
    seconds = time.monotonic() - started
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mnist-live data: error: cannot download mnist (no network?: ")
    assert f"into {tmp_path / 'mnist'} or pass --dataset" in lines[0]
    assert result.stdout == ""
    assert seconds < 5


def test_cli_list_and_path(mirrors, tmp_path: Path) -> None:
    mirror, sums = mirrors("a")
    cache = tmp_path / "cache"
    fetch("mnist", directory=cache / "mnist", mirrors=(mirror.url,), checksums=sums)
    system = tmp_path / "system"
    make_idx_dir(system / "fashion-mnist", gz=False)
    env = {"MNIST_LIVE_CACHE": str(cache), "MNIST_LIVE_SYSTEM_DATA": str(system)}
    listing = run_cli("data", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    mnist_line = next(line for line in listing.stdout.splitlines() if line.startswith("mnist "))
    size = sum((cache / "mnist" / f).stat().st_size for f in NAMES) / 1e6
    assert f"{cache / 'mnist'}  4 files, {size:.1f} MB" in mnist_line
    assert "checksums differ from the published files" in mnist_line  # test files, not MNIST
    assert f"fashion-mnist  {system / 'fashion-mnist'}  4 files" in listing.stdout
    path = run_cli("data", "path", "fashion-mnist", env=env)
    assert path.stdout.strip() == str(system / "fashion-mnist")


def test_published_checksums_name_every_file_once() -> None:
    sums = [md5 for files in CHECKSUMS.values() for md5 in files.values()]
    assert all(sorted(files) == sorted(NAMES) for files in CHECKSUMS.values())
    assert len(set(sums)) == 8 and all(len(md5) == 32 and int(md5, 16) for md5 in sums)
