"""Shared fixtures: free ports, real child processes that are always stopped, real data."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import zmq
from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.server.server import Server
from tornado.ioloop import IOLoop

from broker.clients.clone import CloneClient
from broker.clients.publisher import Publisher
from broker.forwarder import Forwarder
from protocol import ControlCommand, decode, encode_control, tokens
from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from trainer.config import PRESETS
from trainer.datasets import DIGIT_NAMES, Dataset
from trainer.mlp import log_softmax

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SEED = PRESETS["seed"]
"""The 2018 demo's recipe, which small test configurations change a field or two of."""


@contextlib.contextmanager
def bokeh_app_server(app, **options) -> Iterator[int]:
    """A real Bokeh server for the function app ``app`` on its own thread and loop; its port.
    ``options`` go to Bokeh's ``Server``."""
    port = free_tcp_port()
    ready = threading.Event()
    box: dict = {}

    def serve() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        server = Server(
            {"/": Application(FunctionHandler(app))},
            port=port,
            io_loop=IOLoop.current(),
            **options,
        )
        server.start()
        box["server"] = server
        ready.set()
        server.io_loop.start()
        server.stop()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "the Bokeh server did not start"
    try:
        yield port
    finally:
        loop = box["server"].io_loop
        loop.add_callback(loop.stop)
        thread.join(10)


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory) -> Iterator[None]:
    """The programs' per-user files (downloads, the presenter's token) in a folder of the
    test run's own, never the user's."""
    saved = os.environ.get("MNIST_LIVE_CACHE")
    os.environ["MNIST_LIVE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("MNIST_LIVE_CACHE", None)
    else:
        os.environ["MNIST_LIVE_CACHE"] = saved


@pytest.fixture
def endpoint() -> Iterator:
    """Factory for fresh loopback TCP endpoints nobody is using."""
    yield lambda: f"tcp://127.0.0.1:{free_tcp_port()}"


@pytest.fixture
def make_broker(endpoint):
    """Start in-process brokers (a thread each) with any options; all stopped afterwards."""
    started: list[tuple[Forwarder, threading.Event, threading.Thread]] = []

    def make(**options) -> Forwarder:
        token = tokens.presenter_token()[0]  # what `mnist-live control` finds here too
        for attempt in range(5):  # a port found free may be taken before the bind: pick again
            try:
                forwarder = Forwarder(
                    endpoint(), endpoint(), endpoint(), **{"presenter_token": token, **options}
                )
                break
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or attempt == 4:
                    raise
        stop = threading.Event()
        thread = threading.Thread(target=forwarder.run, args=(stop, 10))
        thread.start()
        started.append((forwarder, stop, thread))
        return forwarder

    yield make
    for forwarder, stop, thread in started:
        stop.set()
        thread.join(5)
        forwarder.close()


@pytest.fixture
def broker(make_broker) -> Forwarder:
    """A real broker on its own thread, on fresh ports (``endpoints`` = in, out, snapshot)."""
    return make_broker()


def run_cli(
    *args: str, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``mnist-live *args`` as a real process, run to its end: exit code, stdout, stderr."""
    return subprocess.run(
        [sys.executable, "-m", "protocol.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], words: str) -> None:
    """What a user's mistake must get: exit 2 and one line naming it (so never a traceback)."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real data not found at {path} (the shared data folder is absent)")
    return path


class Programs:
    """Starts ``mnist-live`` subcommands as real processes and guarantees they stop."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        python_args: Sequence[str] = ("-m", "protocol.cli"),
    ) -> subprocess.Popen:
        """``mnist-live *args``; ``python_args`` replaces what runs it (e.g. ``-c`` a wrapper
        that sets limits first and then calls ``protocol.cli.main`` with ``*args``)."""
        name = f"{len(self.started)}-{args[0]}"
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, *python_args, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=self.log_dir,
            start_new_session=True,
        )
        process.log_file = log  # type: ignore[attr-defined]
        self.started.append((name, process))
        return process

    def output(self, process: subprocess.Popen) -> str:
        return Path(process.log_file.name).read_text()  # type: ignore[attr-defined]

    def stop(
        self, process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15
    ) -> int:
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop_all(self) -> None:
        """Stop every program started, each in turn; one that will not stop is killed, and
        reported after the others are stopped too (never left running)."""
        failures: list[BaseException] = []
        for name, process in reversed(self.started):
            try:
                if process.poll() is None:
                    self.stop(process)
            except subprocess.TimeoutExpired as exc:
                failures.append(AssertionError(f"{name} did not stop on SIGTERM: {exc}"))
            with contextlib.suppress(ProcessLookupError):  # its own children, if any are left
                os.killpg(process.pid, signal.SIGKILL)
            process.log_file.close()  # type: ignore[attr-defined]
        if failures:
            raise failures[0]


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Programs]:
    runner = Programs(tmp_path)
    try:
        yield runner
    finally:
        runner.stop_all()


def broker_and_viewer(programs: Programs, endpoint) -> tuple[str, str, int, subprocess.Popen]:
    """A broker and a viewer of it, on fresh ports, the viewer serving: ``(--in, --out, the
    page's port, the viewer)``."""
    broker_in, port = endpoint(), free_tcp_port()
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    programs.start("broker", "--in", broker_in, "--out", broker_out)
    viewer = programs.start("view", "--connect", broker_out, "--port", str(port))
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="the viewer")
    return broker_in, broker_out, port, viewer


def synthetic_trainer(programs: Programs, broker_in: str, *options: str) -> subprocess.Popen:
    """``mnist-live train`` on the synthetic set into ``broker_in``, quiet, with ``options``
    (``--epochs``, ``--steps-per-second``, ``--wait-for-start`` ...)."""
    return programs.start(
        "train", "--connect", broker_in, "--dataset", "synthetic", "--quiet", *options
    )


def wait_until(condition, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def collect(
    client: CloneClient,
    until: int | Callable[[list], object],
    timeout: float = 10.0,
    message: str | None = None,
) -> list:
    """Poll ``client`` until ``until`` messages have arrived (or ``until(messages)`` holds): all
    of them, in order; fail after ``timeout`` seconds saying how many came."""

    def done(got: list) -> object:
        return len(got) >= until if isinstance(until, int) else until(got)

    wanted = message or (f"{until} messages" if isinstance(until, int) else "the messages")
    messages: list = []
    deadline = time.monotonic() + timeout
    while not done(messages):
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {wanted}: got {len(messages)}, "
                f"client counts {dict(client.counts)}"
            )
        messages.extend(client.poll(0.05))
    return messages


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path):
    """A real headless Chromium driven through chromedriver, or a skip saying what is missing."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless browser tests need Debian's chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path}/chrome",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def blob_dataset(n_train: int = 400, n_test: int = 100, seed: int = 0) -> Dataset:
    """Ten classes of bright squares at class-specific places: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 5)
            pixels[i, 4 + row * 10 : 12 + row * 10, 1 + col * 5 : 5 + col * 5] = 255
        return pixels, labels

    train_x, train_y = images(n_train)
    test_x, test_y = images(n_test)
    return Dataset("blobs", train_x, train_y, test_x, test_y, DIGIT_NAMES)


class Collector:
    """A bound XSUB standing in for the broker: gathers decoded messages, sends commands."""

    def __init__(self, endpoint: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.XSUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(endpoint)
        self.socket.send(b"\x01")  # subscribe to everything

    def command(self, command: str, **fields: object) -> None:
        """Send a presenter command upstream, as the broker relays one."""
        self.socket.send(encode_control(ControlCommand(command=command, **fields)))  # type: ignore[arg-type]

    def take(self, kind: type, count: int = 1, timeout: float = 5.0) -> list:
        """Up to ``count`` messages of type ``kind`` (others are skipped) within ``timeout``."""
        found: list = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            if self.socket.poll(50):
                message = decode(self.socket.recv_multipart())
                if isinstance(message, kind):
                    found.append(message)
        return found

    def drain(self, until_kind: str = "run_finished", timeout: float = 10.0) -> list:
        messages: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.poll(100):
                messages.append(decode(self.socket.recv_multipart()))
                if messages[-1].kind == until_kind:
                    return messages
        raise AssertionError(f"no {until_kind} within {timeout} s; got {len(messages)} messages")

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def collector_and_publisher(endpoint):
    address = endpoint()
    collector = Collector(address)
    publisher = Publisher(address)
    # A bound socket only processes new connections when its own thread touches it.
    wait_until(
        lambda: collector.socket.poll(0) or publisher.wait_for_subscriber(0.05),
        timeout=5,
        message="the collector's subscription",
    )
    yield collector, publisher
    publisher.close()
    collector.close()


def make_idx_dir(path: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> Path:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            path / f"{split}-images-idx3-ubyte{suffix}",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(
            path / f"{split}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n, dtype=np.uint8)
        )
    return path


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzip when the name ends in .gz), as MNIST's files are."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of integer labels ``y`` under ``logits``: the loss, computed plainly."""
    return float(-log_softmax(logits)[np.arange(len(y)), y].mean())


class FakeClock:
    """Time that passes only when a test says so, for code that takes a clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
