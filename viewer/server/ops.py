"""``/healthz`` and ``/metrics`` on the viewer's own HTTP port, for whoever runs the room.

``/healthz`` answers JSON a person or a load balancer can read: is this process serving, how
many sessions it holds, and whether its broker subscription is alive and receiving.
``/metrics`` is the Prometheus text exposition format (version 0.0.4). Each server process
keeps its own figures, so with ``--num-procs`` a request shows the process that answered it
(the ``pid`` label of ``mnist_live_viewer_info`` says which).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from typing import Any

from tornado.web import RequestHandler

from viewer import sources
from viewer.server.browser_changes import refusals
from viewer.server.stats import ViewerStats, stats

RECEIVING_WITHIN = 10.0
"""Seconds since the last broker message for the hub to count as receiving."""


def hub_state() -> dict[str, Any]:
    """What feeds this process says of itself (a broker subscription, or a replay's playback);
    a process whose hub has not started reports zeros."""
    try:
        return sources.current().figures()
    except RuntimeError:
        return {"running": False, "received": 0, "rejected": 0, "last_message_age": None}


def resident_memory_bytes() -> int:
    """This process's resident set size now (Linux), else its peak (other Unixes)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def health(viewer: ViewerStats = stats) -> dict[str, Any]:
    state = hub_state()
    age = state["last_message_age"]
    return {
        "ok": state["running"],
        "pid": os.getpid(),
        "uptime_seconds": round(time.time() - viewer.started_at, 3),
        "sessions": viewer.sessions_open,
        "pages_ready": viewer.pages_ready,
        "hub": {
            "connected": state["running"],
            "receiving": age is not None and age < RECEIVING_WITHIN,
            "messages_received": state["received"],
            "messages_rejected": state["rejected"],
            "last_message_age_seconds": age,
        },
    }


def _number(value: float) -> str:
    return (
        "NaN" if value != value else repr(float(value)) if isinstance(value, float) else str(value)
    )


def metrics(viewer: ViewerStats = stats) -> str:
    """The exposition text: HELP, TYPE and the samples of each metric."""
    state = hub_state()
    lags = list(viewer.lags)
    quantiles = viewer.lag_percentiles()
    p = "mnist_live_viewer"
    lag = [
        (f'{p}_lag_seconds{{quantile="{q}"}}', quantiles.get(key, float("nan")))
        for q, key in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))
    ]
    lag += [(f"{p}_lag_seconds_sum", sum(lags)), (f"{p}_lag_seconds_count", len(lags))]
    families: list[tuple[str, str, str, list[tuple[str, float]]]] = [
        (f"{p}_info", "gauge", "This server process.", [(f'{p}_info{{pid="{os.getpid()}"}}', 1)]),
        (f"{p}_sessions_open", "gauge", "Browser sessions open now.", [("", viewer.sessions_open)]),
        (f"{p}_sessions_total", "counter", "Browser sessions opened.",
         [("", viewer.sessions_total)]),
        (f"{p}_messages_received_total", "counter", "Messages received from the broker.",
         [("", state["received"])]),
        (f"{p}_messages_rejected_total", "counter", "Broker messages that did not validate.",
         [("", state["rejected"])]),
        (f"{p}_browser_changes_refused_total", "counter",
         "Changes a browser sent for its own page that were refused.",
         [(f'{p}_browser_changes_refused_total{{why="{why}"}}', count)
          for why, count in (("data", refusals.data), ("invalid", refusals.invalid),
                             ("drawing", refusals.sent_data))]),
        (f"{p}_drawings_total", "counter",
         "Drawings sent by the pads: read by the model, or dropped (and why).",
         [(f'{p}_drawings_total{{outcome="{why}"}}', viewer.drawings[why])
          for why in ("read", "size", "malformed", "rate")]),
        (f"{p}_updates_sent_total", "counter", "Coalesced updates pushed to sessions.",
         [("", viewer.updates_sent)]),
        (f"{p}_frames_encoded_total", "counter", "Frames encoded once for every session.",
         [("", viewer.frames_encoded)]),
        (f"{p}_pages_total", "counter", "First pages sent: serialized, or shared as made.",
         [(f'{p}_pages_total{{made="{made}"}}', count)
          for made, count in (("serialized", viewer.pages_made), ("shared", viewer.pages_shared))]),
        (f"{p}_lag_seconds", "summary", "Trainer-to-page lag of recent frames.", lag),
        (f"{p}_gc_seconds_total", "counter", "Time spent in garbage collections (pauses).",
         [(f'{p}_gc_seconds_total{{generation="{g}"}}', viewer.gc_seconds[g]) for g in range(3)]),
        (f"{p}_gc_collections_total", "counter", "Garbage collections.",
         [(f'{p}_gc_collections_total{{generation="{g}"}}', viewer.gc_collections[g])
          for g in range(3)]),
        (f"{p}_gc_frozen_objects", "gauge", "Objects frozen out of garbage collection.",
         [("", gc.get_freeze_count())]),
        (f"{p}_gc_longest_pause_seconds", "gauge", "The longest garbage collection so far.",
         [("", viewer.gc_longest)]),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         [("", resident_memory_bytes())]),
        ("process_start_time_seconds", "gauge", "Start time of the process since the epoch.",
         [("", viewer.started_at)]),
    ]  # fmt: skip
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{_per_process(sample or name)} {_number(value)}" for sample, value in samples]
    return "\n".join(lines) + "\n"


def _per_process(sample: str) -> str:
    """``sample`` labelled with this process: under ``view --num-procs N`` each scrape is
    answered by any one of N processes, and without the label Prometheus would see one series
    whose counters jump back and forth."""
    label = f'process="{os.getpid()}"'
    if "{" in sample:
        return sample.replace("{", "{" + label + ",", 1)
    return f"{sample}{{{label}}}"


class HealthHandler(RequestHandler):
    def get(self) -> None:
        body = health()
        self.set_status(200 if body["ok"] else 503)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(body))


class MetricsHandler(RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.write(metrics())


PATTERNS: list[Any] = [(r"/healthz", HealthHandler), (r"/metrics", MetricsHandler)]
"""For Bokeh Server's ``extra_patterns``."""
