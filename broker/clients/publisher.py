"""Send a run's messages to the broker without ever making training wait, and resend them
when a broker (re)appears, so a restarted broker gets the whole run back.

The socket is an XPUB rather than a PUB for two reasons. It sees every subscription
(``XPUB_VERBOSE``), so when a broker subscribes (at start, or after it was killed and started
again) the publisher re-sends its own history of the run: the same bytes with the same
sequence numbers, which the fresh broker accepts as gap fills. And it receives the presenter's
commands that the broker relays upstream (:meth:`Publisher.poll_commands`).

Nothing here blocks: sends use ``NOBLOCK`` (ZeroMQ queues them in its I/O thread and drops at
the high-water mark), and a re-publish is spread over later calls, a few milliseconds each.
A replay is the exception (``blocking=True``): it has nothing better to do than wait, and at
full speed it must wait for the broker rather than drop, so its sends block at the high-water
mark (``XPUB_NODROP``) for up to ``send_timeout`` seconds.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter, deque
from typing import Any

import zmq

from broker.curve.keys import ClientKeys, secure_client
from broker.loop.drain import drain
from broker.loop.ratelog import RateLimitedLog
from protocol import ControlCommand, Envelope, ProtocolError, decode_control, encode
from protocol.endpoints import keep_alive
from protocol.runlog import HISTORY_BYTES, Held, RunLog

log = logging.getLogger(__name__)

SEND_HWM = 100_000
"""Messages queued per broker connection before ZeroMQ drops: a whole run's re-publish burst
(a 30-minute run is ~40,000 messages) fits, and at default cadences it is over an hour."""
REPUBLISH_SECONDS = 0.004
"""Time a single call may spend re-sending history: enough for ~1,000 messages per call."""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class Publisher:
    """Stamps each message with this run's id and next sequence number, then sends it."""

    def __init__(
        self,
        endpoint: str,
        run_id: str | None = None,
        *,
        linger_ms: int = 1000,
        history_bytes: int = HISTORY_BYTES,
        blocking: bool = False,
        send_timeout: float = 10.0,
        send_hwm: int = SEND_HWM,
        context: zmq.Context | None = None,
        curve: ClientKeys | None = None,
    ) -> None:
        """``curve``: encrypt the connection with these keys (:mod:`broker.curve`)."""
        self.run_id = run_id or new_run_id()
        self.endpoint = endpoint
        self.seq = 0
        self._history_bytes = history_bytes
        self.history = RunLog(self.run_id, history_bytes)
        self.republished = 0
        self.subscriptions = 0
        self.ignored: Counter[str] = Counter()
        self.dropped = 0
        self.blocking = blocking
        self._replay: deque[Held] = deque()
        self._commands: list[ControlCommand] = []
        self._ignore_log = RateLimitedLog(log, "ignored upstream frame")
        self._context: zmq.Context = context or zmq.Context.instance()
        self._socket = secure_client(keep_alive(self._context.socket(zmq.XPUB)), curve)
        self._socket.setsockopt(zmq.SNDHWM, send_hwm)
        if blocking:  # wait at the high-water mark instead of dropping, but not for ever
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)
            self._socket.setsockopt(zmq.SNDTIMEO, max(1, int(send_timeout * 1000)))
        self._socket.setsockopt(zmq.XPUB_VERBOSE, 1)  # a restarted broker's subscribe too
        self._socket.setsockopt(zmq.MAXMSGSIZE, 64 * 1024)  # upstream: subscriptions, commands
        self._socket.setsockopt(zmq.LINGER, linger_ms)
        self._socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self._socket.connect(endpoint)
        self.subscribed = False

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a broker to subscribe; True if one did."""
        deadline = time.monotonic() + timeout
        while not self.subscribed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._socket.poll(int(remaining * 1000), zmq.POLLIN):
                self._drain_upstream()
        return self.subscribed

    def begin_run(self, run_id: str) -> None:
        """Stamp what follows as run ``run_id`` from seq 0, on the same connection.

        A replay's next ``--loop`` pass is a new run; a new socket for it would leave a window
        in which the broker knows no publisher and a presenter's command goes nowhere.
        """
        self.run_id, self.seq = run_id, 0
        self.history = RunLog(run_id, self._history_bytes)
        self._replay.clear()

    def send(self, model: type[Envelope], **fields: Any) -> Envelope:
        """Build, validate and send one message; returns it for the caller's own records."""
        message = model(run_id=self.run_id, seq=self.seq, **fields)
        self.seq += 1
        self._send(message)
        return message

    def publish(self, message: Envelope, **changes: Any) -> Envelope:
        """Send an already-built message as this run's next one (a replay's use).

        The message is stamped with this run's id, the next sequence number and the time now,
        and given ``changes`` (a replay's ``replayed=True``); every other field is sent as it
        is, unvalidated again. Returns the stamped message.
        """
        stamped = message.model_copy(
            update={**changes, "run_id": self.run_id, "seq": self.seq, "sent_at": time.time()}
        )
        self.seq += 1
        self._send(stamped)
        return stamped

    def _send(self, message: Envelope) -> None:
        self._drain_upstream()
        frames = encode(message)
        self.history.add(message.seq, message.kind, frames)
        try:
            self._socket.send_multipart(
                frames, flags=0 if self.blocking else zmq.NOBLOCK, copy=False
            )
        except zmq.Again:
            self.dropped += 1
            if self.blocking:
                log.warning(
                    "the broker took no message for %.0f s; dropped %s %d",
                    self._socket.getsockopt(zmq.SNDTIMEO) / 1000,
                    message.kind,
                    message.seq,
                )
            else:
                log.debug("send queue full; dropped %s %d", message.kind, message.seq)

    def poll_commands(self) -> list[ControlCommand]:
        """Presenter commands received since the last call (never blocks).

        Also the place where subscriptions are noticed and a pending re-publish advances, so
        a paused trainer that only polls for commands still restores a restarted broker.
        """
        self._drain_upstream()
        commands, self._commands = self._commands, []
        return commands

    def _drain_upstream(self) -> None:
        for frames in drain(self._socket, 1000):
            self._upstream(frames)
        if self._replay:
            self._republish()

    def _upstream(self, frames: list[bytes]) -> None:
        first = frames[0]
        if len(frames) == 1 and first[:1] == b"\x01":
            self.subscriptions += 1
            if not self.subscribed:
                log.info("broker subscribed at %s", self.endpoint)
            self.subscribed = True
            held = self.history.select(0, self.history.last_seq)
            if held:
                log.info("a broker subscribed: re-sending the %d messages of this run", len(held))
                self._replay = deque(held)
        elif len(frames) == 1 and first[:1] == b"\x00":
            pass  # an unsubscribe: the broker went away; it will subscribe again
        elif len(frames) == 1 and first[:1] == b"{":
            try:
                self._commands.append(decode_control(first))
            except ProtocolError as exc:
                self.ignored[exc.reason] += 1
                self._ignore_log(exc.reason, str(exc))
        else:
            self.ignored["frames"] += 1
            self._ignore_log("frames", f"{len(frames)} frame(s) starting {first[:16]!r}")

    def _republish(self) -> None:
        """Send the next part of a pending re-publish; stop at the time budget or a full queue."""
        deadline = time.perf_counter() + REPUBLISH_SECONDS
        replay, send = self._replay, self._socket.send_multipart
        try:
            while replay and time.perf_counter() < deadline:
                for _ in range(min(100, len(replay))):
                    send(replay[0].frames, flags=zmq.NOBLOCK)
                    replay.popleft()
                    self.republished += 1
        except zmq.Again:
            return
        if not replay:
            log.info("re-publish done (%d messages re-sent in all)", self.republished)

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket, giving queued messages up to the linger time to leave."""
        if linger_ms is not None:
            self._socket.setsockopt(zmq.LINGER, linger_ms)
        self._socket.close()
