"""Waits that double with each failure up to a ceiling, so that a long outage
or backlog costs few attempts: the event deliverer's retries
(events/deliverer.py) and the Celery engine's re-sends (engines/sweeper.py)."""
from __future__ import annotations


def doubling(first: float, failures: int, most: float) -> float:
    """``first`` doubled once per failure so far, at most ``most`` (the
    exponent is capped too: no overflow after very many failures)."""
    return min(most, first * 2 ** min(failures, 30))
