"""The event outbox as the API shows it: listing events by state (the dead
ones, above all) and sending one again."""
from __future__ import annotations

from events import EventState
from exceptions import BadRequest, NotFound
from intake.status import iso
from mongo_manager import MongoManager

MAX_LISTED = 1000


def list_events(mongo: MongoManager, state: str | None, limit: str | None) -> dict:
    """Events in ``state`` (default dead), oldest first."""
    state = EventState.DEAD if state is None else state
    if state not in set(EventState):
        raise BadRequest({"state": f"must be one of {', '.join(EventState)}"})
    count = _limit(limit)
    listed = mongo.outbox.list_events(state, count)
    return {"state": state, "events": [describe(e) for e in listed]}


def redeliver(mongo: MongoManager, event_id: str) -> dict:
    """Send the event again (pending, attempts from 0) when its stream's turn comes."""
    event = mongo.outbox.redeliver_event(event_id)
    if event is None:
        raise NotFound(f"no event {event_id!r}", code="event_not_found")
    return describe(event)


def describe(event: dict) -> dict:
    return {"id": event["_id"], "type": event["type"], "stream": event["stream"],
            "sequence": event["sequence"], "state": event["state"],
            "attempts": event["attempts"], "lastError": event.get("lastError"),
            "createdAt": iso(event.get("createdAt")), "data": event["data"]}


def _limit(text: str | None) -> int:
    if text is None:
        return 100
    # isascii + isdigit: '²' is a digit that int() refuses, and so are 5,000 digits.
    whole = text.isascii() and text.isdigit() and len(text) <= 4
    if not whole or not 1 <= int(text) <= MAX_LISTED:
        raise BadRequest({"limit": f"must be a whole number from 1 to {MAX_LISTED}"})
    return int(text)
