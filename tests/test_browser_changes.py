"""A browser's own changes to its page: view state goes through, data and junk are refused.

A real viewer process and a browser-equivalent websocket client (scripts/fanout_client.py):
a session that streams into, replaces or pushes its page's sources, or sends changes that do
not apply, is refused each time, counted in ``/metrics``, logged in a few lines rather than a
traceback each, and the viewer's memory does not grow with it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from tests.conftest import REPO, wait_until
from tests.test_ops import get, parse_metrics
from viewer.server.browser_changes import refused

sys.path.insert(0, str(REPO / "scripts"))
from fanout_client import open_sessions

HUGE = {"x": list(range(20_000))}


def hostile(source_id: str, n: int) -> list[tuple[str, dict]]:
    """``n`` messages of each kind a hostile page might send."""
    stream = {
        "kind": "ColumnsStreamed",
        "model": {"id": source_id},
        "attr": "data",
        "data": {"type": "map", "entries": [["step", HUGE["x"]]]},
        "rollover": None,
    }
    replace = {"kind": "ModelChanged", "model": {"id": source_id}, "attr": "data", "new": HUGE}
    dangling = {"kind": "ModelChanged", "model": {"id": "p-nowhere"}, "attr": "start", "new": 1}
    return (
        [("PATCH-DOC", {"events": [stream]})] * n
        + [("PATCH-DOC", {"events": [replace]})] * n
        + [("PATCH-DOC", {"events": [dangling]})] * n
        + [("PATCH-DOC", {"events": "nope"})] * n
        + [("PUSH-DOC", {"doc": {"roots": []}})] * n
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_the_rules_let_view_state_through_and_nothing_else() -> None:
    def change(attr: str, new: object) -> dict:
        return {"events": [{"kind": "ModelChanged", "model": {"id": "p1"}, "attr": attr,
                            "new": new}]}  # fmt: skip

    def event(name: str, msg_type: str = "bokeh_event") -> dict:
        data = {"type": "event", "name": name, "values": {"type": "map"}}
        return {"events": [{"kind": "MessageSent", "msg_type": msg_type, "msg_data": data}]}

    for attr, new in (("start", 3.5), ("active", True), ("value_throttled", 20),
                      ("inner_width", 800), ("visible", False), ("indices", [1, 2])):  # fmt: skip
        assert refused(change(attr, new)) is None, attr
    assert refused(event("button_click")) is None and refused(event("document_ready")) is None
    for kind in ("ColumnsStreamed", "ColumnsPatched", "ColumnDataChanged", "RootAdded"):
        assert refused({"events": [{"kind": kind}]}) is not None
    assert refused(change("data", {}))
    assert refused(change("text", "<b>hi</b>")) and refused(change("renderers", []))
    new_model = {"type": "object", "name": "ColumnDataSource", "id": "x", "attributes": {}}
    assert refused(change("value", {"type": "map", "entries": [["a", new_model]]}))
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    assert refused(change("indices", deep))
    assert refused(event("tap")) and refused(event("button_click", msg_type="other"))
    assert refused({}) and refused([]) and refused({"events": ["x"]})


def test_a_hostile_page_is_refused_counted_and_quiet(programs) -> None:
    port = free_tcp_port()
    out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    viewer = programs.start("view", "--connect", out, "--port", str(port))
    wait_until(lambda: "dashboard at" in programs.output(viewer), 20, message="viewer up")
    n = 100

    async def attack() -> None:
        (session,) = await open_sessions(f"ws://127.0.0.1:{port}/ws", 1, parallel=1, timeout=20)
        source_id = next(i for i, name in session.names.items() if name == "loss")
        for msgtype, content in hostile(source_id, n):
            session.send(msgtype, content)
            await asyncio.sleep(0.002)
        await asyncio.sleep(1.0)
        assert not session.closed.is_set(), "the attacker's own session may stay open"
        session.close()

    before = rss_mb(viewer.pid)
    asyncio.run(attack())

    def counted() -> dict[str, float]:
        figures = parse_metrics(get(f"http://127.0.0.1:{port}/metrics")[2])
        return {
            why: figures.get(f'mnist_live_viewer_browser_changes_refused_total{{why="{why}"}}', 0)
            for why in ("data", "invalid")
        }

    wait_until(lambda: counted() == {"data": 4 * n, "invalid": n}, 10, message="the refusals")
    grown = rss_mb(viewer.pid) - before
    log = programs.output(viewer)
    print(f"viewer grew {grown:.1f} MB; {log.count('refused a browser')} log lines")
    assert grown < 30, "500 hostile messages of 100 kB each left no copy behind"
    assert "Traceback" not in log and "error handling message" not in log
    assert log.count("refused a browser's change") <= 4
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
