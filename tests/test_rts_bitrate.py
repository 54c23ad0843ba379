"""The RTS rendition decisions (livecenter/media/rts/bitrate.py) on a fake
clock: down at once to what fits after a short hold, up one step after a
long one, no flapping within the cooldown, loss alone steps down."""

from __future__ import annotations

import pytest

from livecenter.media.rts.bitrate import (
    DOWN_HOLD_SECONDS,
    SWITCH_COOLDOWN_SECONDS,
    UP_HOLD_SECONDS,
    RenditionController,
)

MBPS = 1_000_000
LADDER = (500_000, 1 * MBPS, 2 * MBPS, 4 * MBPS)  # ld, sd, hd, fhd


def feed(controller: RenditionController, estimate: float, start: float, seconds: float, step: float = 0.1) -> int:
    now = start
    while now <= start + seconds + 1e-9:
        controller.on_estimate(estimate, now)
        now += step
    return controller.index


def test_a_viewer_that_cannot_keep_up_goes_down_to_what_fits_after_the_hold():
    controller = RenditionController(LADDER, index=3)
    assert feed(controller, 1.5 * MBPS, 0.0, DOWN_HOLD_SECONDS - 0.2) == 3, "not before the hold"
    assert feed(controller, 1.5 * MBPS, DOWN_HOLD_SECONDS - 0.1, 0.3) == 1, "straight to sd: 1 Mbit/s x 1.15 fits"
    assert controller.switches == 1


def test_a_dip_shorter_than_the_hold_changes_nothing():
    controller = RenditionController(LADDER, index=2)
    feed(controller, 1.0 * MBPS, 0.0, DOWN_HOLD_SECONDS / 2)
    assert feed(controller, 3.0 * MBPS, DOWN_HOLD_SECONDS / 2 + 0.1, 2.0) == 2
    assert controller.switches == 0


def test_it_goes_up_one_step_after_the_long_hold_and_not_within_the_cooldown():
    controller = RenditionController(LADDER, index=0)
    assert feed(controller, 10 * MBPS, 0.0, UP_HOLD_SECONDS - 0.2) == 0
    assert feed(controller, 10 * MBPS, UP_HOLD_SECONDS - 0.1, 0.2) == 1, "one step, however much room"
    switched = UP_HOLD_SECONDS
    assert feed(controller, 10 * MBPS, switched + 0.2, SWITCH_COOLDOWN_SECONDS - 0.5) == 1
    # The next step needs the cooldown over and the hold again.
    assert feed(controller, 10 * MBPS, switched + SWITCH_COOLDOWN_SECONDS, UP_HOLD_SECONDS + 0.2) == 2


def test_it_does_not_go_up_without_room_to_spare():
    controller = RenditionController(LADDER, index=1)
    assert feed(controller, 2.5 * MBPS, 0.0, 20.0) == 1, "2.5 < 2 Mbit/s x 1.3"
    assert feed(controller, 2.7 * MBPS, 20.1, UP_HOLD_SECONDS + 0.2) == 2


def test_loss_alone_steps_down_one_and_blocks_going_up():
    controller = RenditionController(LADDER, index=2)
    for tenth in range(int(DOWN_HOLD_SECONDS * 10) + 2):
        controller.on_loss(0.2, tenth / 10)
    assert controller.index == 1
    controller.on_loss(0.05, 5.0)
    assert feed(controller, 10 * MBPS, 5.0, 10.0) == 1, "5 % loss: no step up"
    controller.on_loss(0.0, 15.1)
    assert feed(controller, 10 * MBPS, 15.1, UP_HOLD_SECONDS + 0.2) == 2


def test_no_flapping_on_the_edge_of_two_renditions():
    controller = RenditionController(LADDER, index=2)
    now, estimates = 0.0, [1.9 * MBPS, 2.1 * MBPS] * 300
    for estimate in estimates:  # 60 s of an estimate that wobbles around hd's bitrate every 0.1 s
        controller.on_estimate(estimate, now)
        now += 0.1
    assert controller.switches <= 1, controller


def test_the_lowest_rendition_is_the_floor():
    controller = RenditionController(LADDER, index=1)
    assert feed(controller, 100_000, 0.0, 30.0) == 0


@pytest.mark.parametrize(("bitrates", "index"), [((), 0), ((2, 1), 0), ((1, 2), 2)])
def test_it_refuses_a_ladder_it_cannot_use(bitrates, index):
    with pytest.raises(ValueError):
        RenditionController(bitrates, index)
