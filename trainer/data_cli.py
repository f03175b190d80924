"""Download datasets ahead of a talk, and see what is already on this machine.

``mnist-live data fetch mnist`` puts MNIST into the per-user cache, where ``--dataset auto``
and ``--dataset mnist`` find it; ``data list`` shows what is cached or installed (Debian's
``dataset-fashion-mnist`` package), where, how big, and whether it matches the published files.
"""

from __future__ import annotations

import argparse
import logging

from trainer.datasets import (
    IDX_FILES,
    KNOWN,
    cache_dir,
    find_named,
    has_idx_files,
    idx_files,
    places,
    system_data_dir,
)

log = logging.getLogger("trainer.data")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(
            name, help=summary, description=summary, formatter_class=parser.formatter_class
        )
        sub.add_argument(  # also accepted after the action; SUPPRESS keeps the outer default
            "--log-level",
            default=argparse.SUPPRESS,
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            type=str.upper,
            help="how much to log on stderr, one line per event",
        )
        return sub

    fetch = action("fetch", "download a dataset into the per-user cache, verified by checksum")
    fetch.add_argument("name", metavar="NAME", choices=KNOWN, help=" or ".join(KNOWN))
    fetch.add_argument(
        "--force", action="store_true", help="download again even if valid files are present"
    )
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    action("list", "show which datasets are cached or installed, where, and their sizes")
    path = action("path", "print the directory a dataset is read from (or would be fetched to)")
    path.add_argument(
        "name", metavar="NAME", nargs="?", choices=KNOWN, help="without it: the cache directory"
    )


def run(args: argparse.Namespace) -> int:
    from protocol.errors import CommandError
    from trainer.idx import DatasetError

    try:
        if args.action == "fetch":
            return _fetch(args.name, force=args.force, quiet=args.quiet)
        if args.action == "list":
            return _list()
        return _path(args.name)
    except DatasetError as exc:
        raise CommandError(str(exc)) from None


def _fetch(name: str, *, force: bool, quiet: bool) -> int:
    from trainer.download import fetch

    directory = fetch(name, force=force, progress=False if quiet else None)
    print(f"{name}: {directory}")
    return 0


def _list() -> int:
    from trainer.download import CHECKSUMS, file_md5

    root = cache_dir()
    print(f"cache: {root}  (set MNIST_LIVE_CACHE to use another)")
    system = system_data_dir()
    listed = [(name, directory) for name in KNOWN for directory in places(name)]
    known_dirs = {directory for _, directory in listed}
    if root.is_dir():  # directories of IDX files a user put into the cache by hand
        listed += [
            (d.name, d) for d in sorted(root.iterdir()) if d not in known_dirs and has_idx_files(d)
        ]
    for name, directory in listed:
        files = list(idx_files(directory).values())
        if not files:
            continue
        size = sum(f.stat().st_size for f in files) / 1e6
        published = CHECKSUMS.get(name, {})
        if len(files) < len(IDX_FILES):
            state = f"incomplete: {len(files)} of {len(IDX_FILES)} files"
        elif directory.parent == system:
            state = "from a system package"  # Debian recompresses: other checksums, same data
        elif not published:
            state = "IDX files"
        elif all(published.get(f.name) == file_md5(f) for f in files):
            state = "checksums match the published files"
        else:
            state = "checksums differ from the published files"
        print(f"{name:<14} {directory}  {len(files)} files, {size:.1f} MB, {state}")
    for name in KNOWN:
        if find_named(name) is None:
            print(f"{name:<14} not found: run 'mnist-live data fetch {name}'")
    return 0


def _path(name: str | None) -> int:
    if name is None:
        print(cache_dir())
    else:
        print(find_named(name) or cache_dir() / name)
    return 0
