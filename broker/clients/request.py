"""One request to the broker's snapshot endpoint, one reply: what status, control and the
presenter's buttons need (a snapshot, with its stream of messages, is :mod:`.clone`'s job)."""

from __future__ import annotations

import time
from typing import Any

import zmq
from pydantic import BaseModel

from broker.curve.keys import ClientKeys, secure_client
from protocol import MAX_MESSAGE_BYTES, ProtocolError, endpoints
from protocol.errors import CommandError
from protocol.snapshot import REPLY, ErrorReply, encode_request, parse_reply


def ask(
    endpoint: str, request: BaseModel, timeout: float, curve: ClientKeys | None = None
) -> dict[str, Any]:
    """Send ``request`` (one of :data:`protocol.snapshot.Request`) and return the reply's
    fields; a broker that does not answer in time, or refuses, is a CommandError. ``curve``:
    the keys of a broker started with ``--curve``."""
    endpoints.check_endpoint(endpoint, "--broker")
    if not timeout > 0:
        raise CommandError(f"--timeout must be positive, got {timeout}")
    body = encode_request(request.model_copy(update={"id": 1}))
    socket: zmq.Socket = secure_client(zmq.Context.instance().socket(zmq.DEALER), curve)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    try:
        socket.connect(endpoint)
        socket.send(body)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if not socket.poll(int(remaining * 1000) + 1):
                break
            frames = socket.recv_multipart()
            if frames[0] != REPLY:
                continue  # a held message: not the answer
            try:
                reply = parse_reply(frames)
            except ProtocolError as exc:
                raise CommandError(
                    f"the broker at {endpoint} answered with something this program cannot "
                    f"read ({exc}); are both the same version of mnist-live?"
                ) from None
            if isinstance(reply, ErrorReply):
                raise CommandError(f"the broker refused the request: {reply.message}")
            return reply.model_dump()
    finally:
        socket.close()
    raise CommandError(
        f"no answer from a broker at {endpoint} within {timeout:g} s; "
        "is 'mnist-live broker' running? point --broker at its --snapshot endpoint"
        + ("" if curve is None else "; is it using the same --curve keys?")
    )
