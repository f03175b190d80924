"""The snapshot channel's wire format: every request, every reply, and the frames around them.

The broker's ``--snapshot`` endpoint (a ROUTER) answers snapshot, stats, runs and control
requests; clients talk to it through a DEALER. Like the ZeroMQ guide's ``kvmsg.py``, this one
module is the whole format, and both sides use it, so neither writes a request or a reply by
hand:

- a request is one frame of JSON, one of the :data:`Request` models, discriminated by
  ``type`` and carrying an optional ``id`` that the reply echoes;
- every reply starts with a marker frame: :data:`MSG` for a held message (its wire frames
  follow, exactly as the publisher sent them), or :data:`REPLY` for one JSON object, one of
  the :data:`Reply` models (``end`` of a snapshot, ``stats``, ``runs``, ``ok``, ``error``).

Nothing received is trusted: :func:`parse_request` and :func:`parse_reply` bound sizes and
validate, and raise :class:`~protocol.codec.ProtocolError` with a short reason otherwise.
docs/protocol.md describes the same in prose.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from protocol.codec import ProtocolError, first_error
from protocol.messages import Name

MSG: Final = b"msg"
"""Marker frame of a held message in a snapshot reply; the message's frames follow it."""
REPLY: Final = b"reply"
"""Marker frame of a one-object JSON reply; the JSON frame follows it."""
MAX_REQUEST_BYTES: Final = 8192
"""Largest request the broker reads; a larger one is answered with an error."""

RequestId = int | Annotated[str, Field(max_length=100)] | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: RequestId = Field(default=None, description="echoed in the reply, to match it")


class SnapshotRequest(_Request):
    """Held messages of one run with ``from_seq <= seq <= to_seq``, then an ``end`` marker."""

    type: Literal["snapshot"]
    run: str = Field(default="latest", min_length=1, max_length=200, description='or "latest"')
    from_seq: int = Field(default=0, ge=0)
    to_seq: int | None = Field(default=None, ge=0, description="default: everything held")


class StatsRequest(_Request):
    type: Literal["stats"]


class RunsRequest(_Request):
    type: Literal["runs"]


class ControlRequest(_Request):
    """A presenter command for the trainers, relayed upstream through the broker's XSUB."""

    type: Literal["control"]
    command: dict[str, Any]
    token: str | None = Field(
        default=None, max_length=200, description="the presenter's token; without it, refused"
    )


Request = Annotated[
    SnapshotRequest | StatsRequest | RunsRequest | ControlRequest, Field(discriminator="type")
]
REQUEST: TypeAdapter[Any] = TypeAdapter(Request)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: RequestId = None


class RunInfo(BaseModel):
    """What the broker holds of one run (a ``runs`` reply lists them, oldest first)."""

    model_config = ConfigDict(extra="forbid")

    run_id: Name
    last_seq: int = Field(ge=-1, description="the highest seq seen, -1 if none")
    held: int = Field(ge=0)
    bytes: int = Field(ge=0)
    evicted: int = Field(ge=0, description="curve points dropped to stay within memory")
    superseded: int = Field(ge=0, description="latest-only messages replaced by newer ones")
    finished: bool


class SnapshotEnd(_Reply):
    """Closes a snapshot: everything in ``[from_seq, to_seq]`` not listed ``unseen`` was sent or
    is ``gone`` (superseded or evicted); ``unseen`` ranges the broker has never had."""

    type: Literal["end"]
    run: Name
    known: bool
    from_seq: int
    to_seq: int
    last_seq: int
    sent: int
    gone: int
    unseen: list[tuple[int, int]]
    broker: str = Field(description="the broker's id: a new one means it restarted")


class RunsReply(_Reply):
    type: Literal["runs"]
    runs: list[RunInfo]


class StatsReply(_Reply):
    """The broker's figures (``mnist-live status`` prints them); open-ended by design."""

    model_config = ConfigDict(extra="allow")

    type: Literal["stats"]


class OkReply(_Reply):
    type: Literal["ok"]
    ok: Literal[True] = True


class ErrorReply(_Reply):
    type: Literal["error"]
    message: str


Reply = Annotated[
    SnapshotEnd | RunsReply | StatsReply | OkReply | ErrorReply, Field(discriminator="type")
]
REPLY_ADAPTER: TypeAdapter[Any] = TypeAdapter(Reply)


def encode_request(request: BaseModel) -> bytes:
    """A request as the one frame a client sends."""
    return request.model_dump_json(exclude_none=True).encode()


def parse_request(body: bytes) -> Any:
    """The request in ``body``, or :class:`ProtocolError` (``too_large``, ``invalid``)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise ProtocolError("too_large", f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        return REQUEST.validate_json(body)
    except ValidationError as exc:
        raise ProtocolError("invalid", f"bad request: {first_error(exc, depth=1)}") from None


def reply_frames(reply: BaseModel) -> list[bytes]:
    """A reply as the frames that follow the client's routing id: ``[REPLY, json]``, the
    ``type`` first in the JSON as the documentation writes it."""
    body = {"type": getattr(reply, "type", None), **reply.model_dump()}
    return [REPLY, json.dumps(body, separators=(",", ":")).encode()]


def message_frames(frames: Sequence[bytes]) -> list[bytes]:
    """A held message in a snapshot reply: ``[MSG, *its wire frames]``."""
    return [MSG, *frames]


def parse_reply(frames: Sequence[bytes]) -> Any:
    """A ``[REPLY, json]`` pair as its :data:`Reply` model, or :class:`ProtocolError`."""
    if len(frames) != 2 or frames[0] != REPLY:
        raise ProtocolError("frames", f"a reply is [{REPLY!r}, json], got {len(frames)} frame(s)")
    try:
        return REPLY_ADAPTER.validate_json(frames[1])
    except ValidationError as exc:
        raise ProtocolError("invalid", f"bad reply: {first_error(exc)}") from None
