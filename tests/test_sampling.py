"""Timestamp sampling against a brute-force reference of the SPEC rule."""
from fractions import Fraction

import pytest
from media import expected_samples

from processors.sampling import TimestampSampler, task_number


def sample(timestamps, rate):
    sampler = TimestampSampler(rate)
    return [i for i, t in enumerate(timestamps) if sampler.accept(t)]


def seconds(ms_list):
    return [Fraction(ms, 1000) for ms in ms_list]


CASES = {
    "30fps at 5": [Fraction(i, 30) for i in range(90)],
    "30fps at 30": [Fraction(i, 30) for i in range(30)],
    "25fps at 7": [Fraction(i, 25) for i in range(100)],
    "10fps at 30 (above source)": [Fraction(i, 10) for i in range(25)],
    "vfr with a gap": seconds([0, 33, 66, 100, 400, 410, 420, 1500, 1533, 1566, 2000]),
    "vfr bursts": seconds([0, 5, 10, 15, 20, 700, 701, 702, 1200]),
    "starts late": [Fraction(7, 2) + Fraction(i, 30) for i in range(60)],
    "29.97fps at 5": [Fraction(i * 1001, 30000) for i in range(300)],
}


@pytest.mark.parametrize("rate", [1, 5, 12, 30, 60])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, rate):
    timestamps = CASES[name]
    assert sample(timestamps, rate) == expected_samples(timestamps, rate)


def test_exact_targets_at_5fps_from_30fps():
    assert sample([Fraction(i, 30) for i in range(31)], 5) == [0, 6, 12, 18, 24, 30]


def test_rate_above_source_keeps_every_frame_once():
    timestamps = [Fraction(i, 10) for i in range(20)]
    assert sample(timestamps, 120) == list(range(20))


def test_gap_drops_targets_instead_of_duplicating():
    # Targets 0.2 .. 1.4 s fall into the gap: the frame at 1.5 s is kept once.
    assert sample(seconds([0, 100, 1500, 1600]), 5) == [0, 2, 3]


def test_resumable_state():
    timestamps = [Fraction(i, 30) for i in range(90)]
    first = TimestampSampler(5)
    kept_first = [i for i, t in enumerate(timestamps[:40]) if first.accept(t)]
    second = TimestampSampler(5, next_target=first.next_target, offset=first.offset)
    kept_second = [i + 40 for i, t in enumerate(timestamps[40:]) if second.accept(t)]
    assert kept_first + kept_second == sample(timestamps, 5)


@pytest.mark.parametrize("rate", [0, -1])
def test_bad_rate(rate):
    with pytest.raises(ValueError):
        TimestampSampler(rate)


@pytest.mark.parametrize("index,per_task,expected", [(0, 10, 1), (9, 10, 1), (10, 10, 2),
                                                    (119, 120, 1), (120, 120, 2)])
def test_task_number(index, per_task, expected):
    assert task_number(index, per_task) == expected


@pytest.mark.parametrize("rate", [1, 5, 7, 30, 60])
def test_half_a_tick_before_a_target_is_at_it(rate):
    """Whole milliseconds (WebM, MKV): frame 1 of 30 fps is stored at 33 ms."""
    stored = seconds([round(i * 1000 / 30) for i in range(90)])
    slack = Fraction(1, 2000)
    sampler = TimestampSampler(rate, slack=slack)
    kept = [i for i, t in enumerate(stored) if sampler.accept(t)]
    assert kept == expected_samples(stored, rate, slack)
    assert kept == list(range(0, 90, 30 // rate)) if 30 % rate == 0 else kept
    if rate == 30:
        assert sample(stored, 30) != kept  # without the slack, frames were dropped
