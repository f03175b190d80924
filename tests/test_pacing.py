"""Sessions leave frames out while the loop runs late, and come back when it catches up."""

from __future__ import annotations

import time

from viewer.pacing import MAX_STRIDE, PROBE_SECONDS, THICKEN_EVERY, THIN_EVERY, FramePacing


def run(pacing: FramePacing, late: float, seconds: float, start: float) -> float:
    """Probes every 50 ms for ``seconds``, each ``late`` late; returns the time after."""
    now = start
    for _ in range(round(seconds / PROBE_SECONDS)):
        now += PROBE_SECONDS
        pacing.observe(late, now)
    return now


def test_an_on_time_loop_sends_every_frame() -> None:
    pacing = FramePacing(frame_rate=5)
    run(pacing, 0.004, 10, 0)
    assert pacing.stride == 1
    assert pacing.updates_per_second() == 5


def test_a_late_loop_thins_frames_step_by_step_and_recovers_slowly() -> None:
    pacing = FramePacing(frame_rate=5)
    now = run(pacing, 0.2, 0.2, 0)
    assert pacing.stride == 2  # behind: one step at once
    now = run(pacing, 0.2, THIN_EVERY, now)
    assert pacing.stride == 3  # still behind half a second later: another
    assert abs(pacing.updates_per_second() - 5 / 3) < 1e-9
    now = run(pacing, 0.2, 10, now)
    assert pacing.stride == MAX_STRIDE
    now = run(pacing, 0.0, THICKEN_EVERY / 2, now)
    assert pacing.stride == MAX_STRIDE - 1  # caught up: one step back at once
    now = run(pacing, 0.0, THICKEN_EVERY / 2, now)
    assert pacing.stride == MAX_STRIDE - 1  # the next waits, in case that was a lull
    now = run(pacing, 0.0, THICKEN_EVERY * MAX_STRIDE, now)
    assert pacing.stride == 1
    run(pacing, 0.04, 10, now)  # between the thresholds: left as it is
    assert pacing.stride == 1


def test_the_probe_measures_how_late_its_timer_ran() -> None:
    pacing = FramePacing(frame_rate=5)
    pacing.probe()
    time.sleep(PROBE_SECONDS + 0.3)  # the loop was blocked for 300 ms past the next probe
    pacing.probe()
    assert 0.07 < pacing.delay < 0.15
    assert pacing.stride == 2
