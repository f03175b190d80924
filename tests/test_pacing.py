"""Sessions leave frames out while the loop runs late, and come back when it catches up."""

from __future__ import annotations

import time

from viewer.pacing import MAX_STRIDE, PROBE_SECONDS, FramePacing


def test_an_on_time_loop_sends_every_frame() -> None:
    pacing = FramePacing(frame_rate=5)
    for _ in range(50):
        pacing.observe(0.004)
    assert pacing.stride == 1
    assert not any(pacing.skip(frame) for frame in range(1, 20))
    assert pacing.updates_per_second() == 5


def test_a_late_loop_thins_frames_up_to_the_limit_and_recovers_slowly() -> None:
    pacing = FramePacing(frame_rate=5)  # 200 ms frames
    pacing.observe(0.25)
    assert pacing.stride == 2  # seen as 125 ms late: more than half a frame
    pacing.observe(0.25)
    pacing.observe(0.25)
    assert pacing.stride == 3  # seen as ~220 ms late: more than two half-frames
    sent = [frame for frame in range(1, 13) if not pacing.skip(frame)]
    assert sent == [3, 6, 9, 12]
    assert abs(pacing.updates_per_second() - 5 / 3) < 1e-9
    for _ in range(20):
        pacing.observe(5.0)
    assert pacing.stride == MAX_STRIDE
    pacing.observe(0.0)
    assert pacing.stride == MAX_STRIDE  # one good probe is not a recovery
    for _ in range(60):
        pacing.observe(0.0)
    assert pacing.stride == 1


def test_the_probe_measures_how_late_its_timer_ran() -> None:
    pacing = FramePacing(frame_rate=5)
    pacing.probe()
    time.sleep(PROBE_SECONDS + 0.3)  # the loop was blocked for 300 ms past the next probe
    pacing.probe()
    assert 0.14 < pacing.delay < 0.3
    assert pacing.stride >= 2
