"""The pipeline's decisions (feedsvc.serve.timetable): how long it waits for the watcher, when it
rescans (periodically, after a burst, after failures with backoff, when descriptors ran out),
and which wake-ups only check the state file. Pure: the clock is passed in."""

from __future__ import annotations

import itertools

import pytest

from feedsvc.serve.timetable import (
    BURST_PATHS,
    BURST_RESCAN_S,
    FAILED_RETRY_MAX_S,
    FAILED_RETRY_S,
    FD_RETRY_S,
    SCHEDULE_SLACK_S,
    WRITE_RETRY_S,
    Timetable,
    only_a_check,
)

NOW = 1000.0


@pytest.mark.parametrize(("next_rescan", "deferred", "left_over", "due_in", "expected"), [
    (NOW + 30, False, False, None, WRITE_RETRY_S),  # the state is checked at least this often
    (NOW + 2, False, False, None, 2.0),  # the rescan comes first
    (NOW - 7, False, False, None, 0.0),  # a rescan overdue: at once, never negative
    (NOW + 30, True, False, None, FD_RETRY_S),  # seeds wait for descriptors
    (NOW + 0.1, True, False, None, 0.1),
    (NOW + 30, False, True, None, 0.0),  # the budget's left-over: at once
    (NOW + 30, True, True, 3.0, 0.0),
    (NOW + 30, False, False, 1.0, 1.0 + SCHEDULE_SLACK_S),  # a scheduled entry, a bit after
    (NOW + 30, False, False, -3.0, 0.0),  # its time has passed
    (NOW + 30, False, False, 60.0, WRITE_RETRY_S),
    (NOW + 30, True, False, 0.2, 0.2 + SCHEDULE_SLACK_S),
    (NOW + 2, False, False, 4.0, 2.0),
])
def test_how_long_the_loop_waits_for_a_batch(next_rescan: float, deferred: bool,
                                             left_over: bool, due_in: float | None,
                                             expected: float) -> None:
    timetable = Timetable(rescan_s=300.0, next_rescan=next_rescan)
    assert timetable.timeout(NOW, deferred=deferred, left_over=left_over,
                             due_in=due_in) == pytest.approx(expected)


@pytest.mark.parametrize(("failed", "first_rescan"), [(False, NOW + 300.0),
                                                      (True, NOW + FAILED_RETRY_S)])
def test_the_first_rescan_is_a_period_away_or_soon_after_a_failed_start(
        failed: bool, first_rescan: float) -> None:
    timetable = Timetable.starting(NOW, 300.0, failed=failed)
    assert timetable.next_rescan == first_rescan
    assert not timetable.rescan_due(first_rescan - 0.001) and timetable.rescan_due(first_rescan)


def test_a_rescan_puts_the_next_one_a_period_later() -> None:
    timetable = Timetable(rescan_s=300.0, next_rescan=NOW - 5)
    assert timetable.rescan_due(NOW)
    timetable.rescanning(NOW)
    assert timetable.next_rescan == NOW + 300.0 and not timetable.rescan_due(NOW + 299)


#: Half a burst and a bit: two such batches close together make one.
BURST = BURST_PATHS // 2 + 1


# (seconds after NOW, paths) of update batches → the next rescan after the last one
@pytest.mark.parametrize(("batches", "next_rescan"), [
    ([(0.0, 1)], NOW + 300),
    ([(0.0, BURST_PATHS - 1)], NOW + 300),  # one short of a burst
    ([(0.0, BURST_PATHS)], NOW + BURST_RESCAN_S),  # one batch the size of a burst
    ([(0.0, BURST), (0.5, BURST)], NOW + 0.5 + BURST_RESCAN_S),  # batches close together
    ([(0.0, BURST), (0.5, 1), (1.2, BURST)], NOW + 1.2 + BURST_RESCAN_S),  # each gap short
    ([(0.0, BURST), (0.5 + BURST_RESCAN_S + 0.1, BURST)], NOW + 300),  # a pause: counted anew
    ([(0.0, BURST_PATHS), (10.0, 1)], NOW + BURST_RESCAN_S),  # the burst's rescan stays due
])
def test_a_burst_brings_a_rescan_soon(batches: list[tuple[float, int]],
                                      next_rescan: float) -> None:
    timetable = Timetable(rescan_s=300.0, next_rescan=NOW + 300)
    for after, paths in batches:
        timetable.updated(NOW + after, paths)
    assert timetable.next_rescan == pytest.approx(next_rescan)


def test_failures_back_off_to_the_cap_and_a_success_resets_it() -> None:
    timetable = Timetable(rescan_s=300.0, next_rescan=NOW + 300)
    delays = [timetable.failed(NOW + n) for n in range(9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert FAILED_RETRY_S == 1.0 and FAILED_RETRY_MAX_S == 60.0
    assert timetable.next_rescan == NOW + 0 + 1.0  # the earliest retry asked for stays
    timetable.rescanning(NOW + 1)
    assert timetable.failed(NOW + 2) == FAILED_RETRY_MAX_S
    assert timetable.next_rescan == NOW + 2 + FAILED_RETRY_MAX_S
    timetable.recovered()
    assert timetable.failed(NOW + 3) == FAILED_RETRY_S
    assert timetable.next_rescan == NOW + 3 + FAILED_RETRY_S


@pytest.mark.parametrize(("next_rescan", "expected"), [(NOW + 300, NOW + FD_RETRY_S),
                                                       (NOW + 0.1, NOW + 0.1)])
def test_out_of_descriptors_the_folder_is_listed_again_shortly(next_rescan: float,
                                                               expected: float) -> None:
    timetable = Timetable(rescan_s=300.0, next_rescan=next_rescan)
    timetable.descriptors_exhausted(NOW)
    assert timetable.next_rescan == expected


@pytest.mark.parametrize(("rescan", "needs_retry", "left_over", "due_passed"),
                         list(itertools.product([False, True], repeat=4)))
def test_a_wake_up_is_only_a_check_when_nothing_is_to_be_applied(
        rescan: bool, needs_retry: bool, left_over: bool, due_passed: bool) -> None:
    expected = not (rescan or needs_retry or left_over or due_passed)
    assert only_a_check(rescan=rescan, needs_retry=needs_retry, left_over=left_over,
                        due_passed=due_passed) is expected
