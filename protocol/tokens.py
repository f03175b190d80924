"""The presenter's token: the one secret that lets a request command the trainers.

The broker relays a presenter command only when it carries this token (compared in constant
time), and the viewer's presenter page is the one whose URL holds it. Every program finds it
the same way, so that on one machine they agree without being told: ``--presenter-token-file
FILE``, else ``$MNIST_LIVE_PRESENTER_TOKEN``, else the per-user file
``~/.cache/mnist-live/presenter-token`` (``$MNIST_LIVE_CACHE`` moves it), made on first use
with a random token, readable by its owner only. Never on a command line, where any user of
the machine could read it (``/proc/PID/cmdline``).
"""

from __future__ import annotations

import argparse
import hmac
import os
import re
import secrets
from pathlib import Path

from protocol.errors import CommandError

TOKEN_ENV = "MNIST_LIVE_PRESENTER_TOKEN"
TOKEN = re.compile(r"[A-Za-z0-9_-]{8,128}")
"""What a token may be: it goes in a URL."""


def add_token_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--presenter-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"the presenter's token, {what} (default: ${TOKEN_ENV}, else "
        "~/.cache/mnist-live/presenter-token, made on first use; the same for every program "
        "of this user; delete the file for a new one)",
    )


def default_file() -> Path:
    """``$MNIST_LIVE_CACHE/presenter-token``, else ``$XDG_CACHE_HOME`` or ``~/.cache``'s
    ``mnist-live/presenter-token``."""
    if override := os.environ.get("MNIST_LIVE_CACHE"):
        return Path(override) / "presenter-token"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-live" / "presenter-token"


def presenter_token(file: Path | None = None) -> tuple[str, str]:
    """The token and where it came from (for a log line; never the token itself)."""
    if file is not None:
        return _read(file), str(file)
    if from_env := os.environ.get(TOKEN_ENV):
        return _checked(from_env, f"${TOKEN_ENV}"), f"${TOKEN_ENV}"
    path = default_file()
    if not path.exists():
        _create(path)
    return _read(path), str(path)


def same(given: str | None, token: str) -> bool:
    """``given`` is the token (constant time: how long it takes says nothing of the token)."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _create(path: Path) -> None:
    """Write a new token to a file of its own, then link it into place: a program that reads
    the path sees no file or a whole token, never an empty one; the first to link wins."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(18) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another program made it first: use theirs
        finally:
            draft.unlink()
    except OSError as exc:
        raise CommandError(
            f"cannot create the presenter token file {path} ({exc.strerror}); "
            f"set ${TOKEN_ENV} or pass --presenter-token-file"
        ) from None


def _read(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise CommandError(
            f"cannot read the presenter token file {path} ({exc.strerror})"
        ) from None
    return _checked(text, str(path))


def _checked(token: str, where: str) -> str:
    if not TOKEN.fullmatch(token):
        raise CommandError(f"the presenter token in {where} must be 8-128 letters, digits, - or _")
    return token
