"""Fetch MNIST and Fashion-MNIST into the per-user cache, verified and atomically.

A talk happens wherever the room's Wi-Fi is, so the presenter downloads ahead of time
(``mnist-live data fetch mnist``) and the trainer never needs the network. Each file is
streamed to a temporary file beside its final name, checked against the MD5 sums torchvision
publishes, and only then renamed into place: an interrupted or corrupted download leaves
nothing a later run could mistake for data. Without a network the fetch fails within a few
seconds with one line saying how to put the files there by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from protocol.cli.progress import Progress
from trainer.datasets import cache_dir
from trainer.files import atomic_file
from trainer.idx import DatasetError

log = logging.getLogger(__name__)

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
MIRROR_ENV = "MNIST_LIVE_MIRROR"
TIMEOUT = 3.0  # seconds to connect (and for any one read to stall)
MAX_BYTES = 64 * 2**20  # the largest published file is 26 MB
_CHUNK = 64 * 1024


class DownloadError(DatasetError):
    """A dataset that could not be fetched; one line saying why and how to do without."""


class _Failure(Exception):
    """One mirror's failure for one file; ``network`` when it never got an answer."""

    def __init__(self, reason: str, network: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.network = network


def mirrors_for(name: str) -> tuple[str, ...]:
    """The base URLs to try, in order; ``$MNIST_LIVE_MIRROR`` replaces them all."""
    if override := os.environ.get(MIRROR_ENV):
        return (override,)
    return MIRRORS[name]


def fetch(
    name: str,
    *,
    directory: Path | None = None,
    mirrors: tuple[str, ...] | None = None,
    checksums: dict[str, str] | None = None,
    force: bool = False,
    timeout: float = TIMEOUT,
    progress: bool | None = None,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """Make sure ``directory`` (default ``cache_dir()/name``) holds the dataset's files.

    Files already there with the right checksum are kept unless ``force``. ``checksums`` maps
    each file name to its MD5 (default: the published ones). ``progress`` True draws a bar on
    stderr, False nothing; None (the default) draws it on a terminal and logs a line every ten
    seconds elsewhere. Returns the directory.
    """
    if name not in CHECKSUMS:
        raise DownloadError(f"unknown dataset {name!r}: can download {', '.join(CHECKSUMS)}")
    directory = Path(directory) if directory is not None else cache_dir() / name
    checksums = checksums if checksums is not None else CHECKSUMS[name]
    mirrors = mirrors or mirrors_for(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {directory} ({exc.strerror or exc})") from None
    for filename, md5 in checksums.items():
        target = directory / filename
        if target.is_file() and not force:
            if file_md5(target) == md5:
                log.info("%s: already have %s", name, target)
                continue
            log.info("%s: %s differs from the published file; fetching it again", name, target)
        _fetch_file(name, target, md5, mirrors, timeout, progress, max_bytes)
    return directory


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_file(
    name: str,
    target: Path,
    md5: str,
    mirrors: tuple[str, ...],
    timeout: float,
    show: bool | None,
    max_bytes: int,
) -> None:
    failures: list[_Failure] = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + target.name
        started = time.monotonic()
        try:
            size = _download(url, target, md5, timeout, show, max_bytes)
        except _Failure as failure:
            log.debug("%s: %s", url, failure.reason)  # the final error lists every reason
            failures.append(failure)
            continue
        seconds = time.monotonic() - started
        after = f" (after: {'; '.join(f.reason for f in failures)})" if failures else ""
        log.info("%s: %s, %s in %.1f s from %s%s", name, target, _size(size), seconds, url, after)
        return
    offline = all(failure.network for failure in failures)
    reasons = "; ".join(failure.reason for failure in failures)
    raise DownloadError(
        f"cannot download {name} ({'no network?: ' if offline else ''}{reasons}); copy the "
        f"four {TITLES.get(name, name)} .gz files into {target.parent} or pass "
        "--dataset /path/to/dir"
    )


def _download(
    url: str, target: Path, md5: str, timeout: float, show: bool | None, max_bytes: int
) -> int:
    """Stream ``url`` to a temporary file, check it, rename it to ``target``; return its size."""
    parts = urlsplit(url)
    where = parts.netloc or url
    if parts.scheme not in ("http", "https", "file"):
        raise _Failure(f"{url}: not an http(s) or file URL", network=False)
    if parts.hostname and not urllib.request.getproxies().get(parts.scheme):
        _resolve(parts.hostname, timeout)
    if not os.access(target.parent, os.W_OK):
        raise DownloadError(f"cannot write into {target.parent} (permission denied)")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_file(target) as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise _Failure(f"{where}: {target.name} is {total} bytes, too big", network=False)
            digest = hashlib.md5(usedforsecurity=False)
            bar = Progress(
                total, unit="B", unit_scale=True, description=target.name,
                enabled=show is not False, bar=show, interval=0.1, logger=log,
            )  # fmt: skip
            done = 0
            try:
                while chunk := response.read(_CHUNK):
                    done += len(chunk)
                    if done > max_bytes:
                        raise _Failure(f"{where}: {target.name} exceeds {max_bytes} bytes", False)
                    digest.update(chunk)
                    out.write(chunk)
                    if bar.due():  # the bar says the bytes itself; a log line needs words
                        of = f" of {_size(total)}" if total else ""
                        bar.show(done, "" if bar.tty else f"{target.name}: {_size(done)}{of}")
            finally:
                bar.close(done)  # ends the bar's line, so whatever is printed next starts afresh
            # Raising here, inside atomic_file, discards what was written.
            if total is not None and done != total:  # http.client reads a cut-off body quietly
                raise _Failure(f"{where}: connection closed after {done} of {total} bytes", True)
            if digest.hexdigest() != md5:
                raise _Failure(
                    f"{where}: {target.name} has MD5 {digest.hexdigest()}, expected {md5}",
                    network=False,
                )
        return done
    except urllib.error.HTTPError as exc:
        raise _Failure(f"{where}: HTTP {exc.code} {exc.reason}", network=False) from None
    except urllib.error.URLError as exc:
        raise _Failure(f"{where}: {_one_line(exc.reason)}", network=True) from None
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, short reads
        raise _Failure(f"{where}: {_one_line(exc)}", network=True) from None


def _resolve(host: str, timeout: float) -> None:
    """Look ``host`` up within ``timeout``: the resolver has no timeout of its own to pass."""
    error: list[OSError] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            error.append(exc)

    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _Failure(f"{host}: no answer from DNS within {timeout:g} s", network=True)
    if error:
        raise _Failure(f"{host}: cannot resolve ({_one_line(error[0])})", network=True)


def _one_line(reason: object) -> str:
    text = " ".join(str(reason).split())
    return text or type(reason).__name__


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"
