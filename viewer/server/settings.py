"""What one viewer process was asked to do, shared by its lifecycle hooks and every session.

``mnist-live view`` passes its options to the Bokeh app as arguments (so plain ``bokeh serve
viewer/app --args ...`` works too); ``server_lifecycle`` parses them into one
:class:`ViewerSettings` per process, and sessions read it with :func:`current`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from broker.curve import keys as curve_keys
from broker.curve.keys import ClientKeys
from protocol import endpoints, tokens

Theme = Literal["light", "dark"]
THEMES: tuple[Theme, ...] = ("light", "dark")
FRAME_RATE = 5.0
"""Updates per second pushed to each session; the trainer may publish much faster."""


@dataclass(frozen=True)
class ViewerSettings:
    connect: str = endpoints.BROKER_OUT
    snapshot: str | None = None
    presenter_token: str = ""
    theme: Theme = "light"
    large: bool = False
    frame_rate: float = FRAME_RATE
    replay: str | None = None
    """A recording to play back instead of subscribing to a broker (``view --replay``)."""
    replay_run: str | None = None
    """The recording's run to play (default: the one with the most messages)."""
    compare: tuple[str, ...] = ()
    """More recordings (``view --replay a.mcap --replay b.mcap``): not played, their runs
    offered by ``/compare`` beside the played file's."""
    open_controls: bool = False
    """Every session gets the playback controls, not only the presenter's (this machine only)."""
    prebuild: int = 1
    """Audience pages built ahead in each process (:mod:`viewer.pages`)."""
    curve: str | None = None
    """The key folder of a broker started with ``--curve`` (:mod:`broker.curve`)."""
    keep_drawings: str | None = None
    """A folder where the room's labelled digits are kept as an ``.npz`` (else memory only)."""

    @property
    def curve_keys(self) -> ClientKeys | None:
        """This viewer's CURVE keys, when the broker wants them."""
        return curve_keys.client_keys(Path(self.curve), "subscriber") if self.curve else None

    @property
    def snapshot_endpoint(self) -> str:
        """The broker's snapshot endpoint: late-joiner history and the presenter's commands."""
        return self.snapshot or endpoints.snapshot_endpoint_for(self.connect)


def add_look_arguments(parser: argparse.ArgumentParser, page: str) -> None:
    """``--theme`` and ``--large``, for every program that draws the dashboard."""
    parser.add_argument("--theme", choices=THEMES, default="light", help=f"colour theme{page}")
    parser.add_argument("--large", action="store_true", help=f"large type for projectors{page}")


def app_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="viewer/app", add_help=False)
    parser.add_argument("--connect", default=endpoints.BROKER_OUT)
    parser.add_argument("--snapshot", default=None)
    parser.add_argument("--presenter-token", default="")
    parser.add_argument("--theme", choices=THEMES, default="light")
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--frame-rate", type=float, default=FRAME_RATE)
    parser.add_argument("--replay", default=None)
    parser.add_argument("--replay-run", default=None)
    parser.add_argument("--compare", action="append", default=[])
    parser.add_argument("--open-controls", action="store_true")
    parser.add_argument("--prebuild", type=int, default=1)
    parser.add_argument("--curve", default=None)
    parser.add_argument("--keep-drawings", default=None)
    return parser


def parse_app_args(argv: list[str]) -> ViewerSettings:
    """Settings from the app's arguments; without a presenter token, the user's own
    (:mod:`protocol.tokens`)."""
    args, _ = app_parser().parse_known_args(argv)
    values = vars(args)
    endpoints.check_endpoint(args.connect, "--connect")
    if args.snapshot:
        endpoints.check_endpoint(args.snapshot, "--snapshot")
    values["presenter_token"] = args.presenter_token or tokens.presenter_token()[0]
    values["compare"] = tuple(args.compare)
    return ViewerSettings(**values)


def app_argv(settings: ViewerSettings) -> list[str]:
    """The inverse of :func:`parse_app_args`, for handing settings to the Bokeh app.

    Values go as ``--name=value``: a random token may begin with "-", which argparse would
    otherwise take for an option.
    """
    argv = [f"--connect={settings.connect}", f"--theme={settings.theme}"]
    argv += [f"--presenter-token={settings.presenter_token}"]
    argv += [f"--frame-rate={settings.frame_rate}"]
    if settings.snapshot:
        argv += [f"--snapshot={settings.snapshot}"]
    if settings.large:
        argv.append("--large")
    if settings.replay:
        argv += [f"--replay={settings.replay}"]
    if settings.replay_run:
        argv += [f"--replay-run={settings.replay_run}"]
    argv += [f"--compare={path}" for path in settings.compare]
    if settings.open_controls:
        argv.append("--open-controls")
    argv += [f"--prebuild={settings.prebuild}"]  # 0 too: the app's default is 1
    if settings.curve:
        argv += [f"--curve={settings.curve}"]
    if settings.keep_drawings:
        argv += [f"--keep-drawings={settings.keep_drawings}"]
    return argv


_settings: ViewerSettings | None = None


def configure(settings: ViewerSettings) -> ViewerSettings:
    global _settings
    _settings = settings
    return settings


def current() -> ViewerSettings:
    if _settings is None:
        raise RuntimeError("viewer settings not configured; serve the app with 'mnist-live view'")
    return _settings
