"""The key folder: who holds which CURVE key, and how a socket is made to use it.

``mnist-live keys init DIR`` makes three key pairs, each as ZeroMQ's own certificate files
(``NAME.key`` public, ``NAME.key_secret`` both; :func:`zmq.auth.create_certificates`)::

    DIR/broker.key, broker.key_secret           the broker's: it is the CURVE server
    DIR/publisher.key, publisher.key_secret     trainers and replays
    DIR/subscriber.key, subscriber.key_secret   viewers, recorders, status and control
    DIR/publishers/publisher.key                the keys the broker admits on --in
    DIR/subscribers/subscriber.key              ... on --out and --snapshot

A program started with ``--curve DIR`` reads the broker's public key and its own role's pair;
the broker reads its pair and the two lists. To run a trainer on another machine, copy the
folder there without ``broker.key_secret`` and ``subscriber.key_secret`` (a viewer's copy
leaves out ``publisher.key_secret``); to admit a further key, put its public ``.key`` file in
the list's folder (the broker rereads the lists at a handshake, at most once a second).

Secret files are made readable by their owner only, and a secret file others can read is
refused, as ssh refuses such a private key.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import zmq
import zmq.auth

from protocol.errors import CommandError

_Socket = TypeVar("_Socket", bound=Any)
log = logging.getLogger("broker.curve")
Role = Literal["publisher", "subscriber"]
ROLES: tuple[Role, ...] = ("publisher", "subscriber")
BROKER = "broker"
ALLOWED = {"publisher": "publishers", "subscriber": "subscribers"}
"""Each role's list of admitted public keys: a folder under the key folder."""


def init(folder: Path) -> list[Path]:
    """Make the key folder (see the module docstring); returns the files made.

    Refuses a folder that already holds keys: new keys would lock out every machine that has
    a copy of the old ones.
    """
    if (folder / f"{BROKER}.key_secret").exists():
        raise CommandError(
            f"{folder} already holds keys; remove it first to make new ones "
            "(every machine with a copy of the old folder then needs the new one)"
        )
    old_mask = os.umask(0o077)  # the secrets are never readable by others, not even briefly
    try:
        folder.mkdir(parents=True, exist_ok=True)
        made: list[Path] = []
        for name in (BROKER, *ROLES):
            public, secret = zmq.auth.create_certificates(folder, name)
            made += [Path(public), Path(secret)]
        for role in ROLES:
            listed = folder / ALLOWED[role]
            listed.mkdir(exist_ok=True)
            made.append(Path(shutil.copy(folder / f"{role}.key", listed / f"{role}.key")))
    except OSError as exc:
        raise CommandError(f"cannot make keys in {folder}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_mask)
    return made


@dataclass(frozen=True)
class ServerKeys:
    """The broker's side: its own pair and the folders of admitted keys."""

    folder: Path
    public: bytes
    secret: bytes = field(repr=False)

    def secure(self, socket: zmq.Socket, role: Role) -> None:
        """Make ``socket`` (bound by the broker) a CURVE server that asks the ZAP gate
        about each client, in the domain of ``role``'s list."""
        socket.curve_server = True
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret
        socket.zap_domain = ALLOWED[role].encode()

    def allowed(self, role: Role) -> set[bytes] | None:
        """The z85 public keys listed for ``role`` now (the folder may have changed), file
        by file: a file half copied or not a key is skipped. None if the folder cannot be
        read at all (the caller keeps the list it had)."""
        listed = self.folder / ALLOWED[role]
        try:
            files = sorted(listed.glob("*.key"))
        except OSError:
            return None
        keys: set[bytes] = set()
        for path in files:
            try:
                keys.add(zmq.auth.load_certificate(path)[0])
            except (OSError, ValueError):
                log.warning("--curve: skipped %s, which holds no public key", path)
        return keys


@dataclass(frozen=True)
class ClientKeys:
    """A client's side: its own pair and the broker's public key."""

    public: bytes
    secret: bytes = field(repr=False)
    server: bytes

    def secure(self, socket: _Socket) -> _Socket:
        """Make ``socket`` a CURVE client of the broker; returns it. Before ``connect``."""
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret
        socket.curve_serverkey = self.server
        return socket


def secure_client(socket: _Socket, keys: ClientKeys | None) -> _Socket:
    """``socket``, made a CURVE client when ``keys`` is given (plain otherwise)."""
    return keys.secure(socket) if keys is not None else socket


def server_keys(folder: Path) -> ServerKeys:
    """The broker's keys from ``folder``, or a one-line error saying what is missing."""
    public, secret = _pair(folder, BROKER)
    for role in ROLES:
        if not (folder / ALLOWED[role]).is_dir():
            raise CommandError(
                f"--curve {folder}: no {ALLOWED[role]}/ folder of admitted keys; "
                "make the folder with 'mnist-live keys init DIR'"
            )
    return ServerKeys(folder, public, secret)


def client_keys(folder: Path, role: Role) -> ClientKeys:
    """A ``role`` program's keys from ``folder``, or a one-line error."""
    public, secret = _pair(folder, role)
    server, _ = _load(folder / f"{BROKER}.key", folder)
    return ClientKeys(public, secret, server)


def _pair(folder: Path, name: str) -> tuple[bytes, bytes]:
    if not zmq.has("curve"):
        raise CommandError(
            "--curve: this ZeroMQ library was built without CURVE; install pyzmq's own wheel"
        )
    path = folder / f"{name}.key_secret"
    if path.exists() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CommandError(
            f"--curve: {path} can be read by other users; make it yours alone "
            f"(chmod 600 {path}) or make new keys"
        )
    public, secret = _load(path, folder)
    if secret is None:
        raise CommandError(f"--curve: {path} holds no secret key; make new keys")
    return public, secret


def _load(path: Path, folder: Path) -> tuple[bytes, bytes | None]:
    if not folder.is_dir():
        raise CommandError(
            f"--curve {folder}: no such folder; make one with 'mnist-live keys init {folder}'"
        )
    try:
        return zmq.auth.load_certificate(path)
    except OSError:
        raise CommandError(
            f"--curve {folder}: {path.name} is missing; copy the whole folder made by "
            "'mnist-live keys init'"
        ) from None
    except ValueError:
        raise CommandError(f"--curve: {path} is not a key file; make new keys") from None


def add_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, role: str) -> None:
    """``--curve DIR``, as every program that talks to a broker takes it."""
    parser.add_argument(
        "--curve",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"encrypt the connection to the broker and prove this {role} with the keys in "
        "DIR, made by 'mnist-live keys init DIR' (the broker needs --curve too; SECURITY.md)",
    )


def from_arguments(args: argparse.Namespace, role: Role) -> ClientKeys | None:
    """The keys ``--curve`` names for a ``role`` program, or None without ``--curve``."""
    folder = getattr(args, "curve", None)
    return client_keys(folder, role) if folder is not None else None
