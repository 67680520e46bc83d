"""The event outbox (events/__init__.py; sent by events/deliverer.py): EventOutbox and
the sequence numbers of each stream (EventSequence)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument

from events import Event, EventState
from stores.common import EPOCH, Atomically, Collections, Store, new_id, now


class OutboxStore(Store):
    """Events to send, each stream in order."""

    def __init__(self, collections: Collections, atomically: Atomically,
                 record_events: bool) -> None:
        super().__init__(collections, atomically)
        # events.url set: state changes record their events (else nothing would send them)
        self.events_on = record_events

    def add_events(self, stream: str, events: list[Event], session: Any = None) -> None:
        """Record ``events`` of ``stream`` with the next sequence numbers. Called
        inside the transaction of the change they report, so both or neither
        happen and the numbers have no gap."""
        if not self.events_on or not events:
            return
        counter = self.c.sequences.find_one_and_update(
            {"_id": stream}, {"$inc": {"sequence": len(events)}}, upsert=True,
            return_document=ReturnDocument.AFTER, session=session)
        first = counter["sequence"] - len(events) + 1
        at = now()
        self.c.outbox.insert_many([{
            "_id": f"msg_{new_id()}", "stream": stream, "sequence": first + i, "type": str(kind),
            "data": data, "state": EventState.PENDING, "attempts": 0, "createdAt": at,
            "nextAttemptAt": at, "leaseUntil": EPOCH, "owner": None, "lastError": None}
                                   for i, (kind, data) in enumerate(events)], session=session)

    def event_heads(self, limit: int = 500) -> list[dict]:
        """The first pending event of each stream (of the oldest ``limit`` pending):
        an event is sent only once every earlier one of its stream is delivered
        or dead, so each stream arrives in order."""
        heads: dict[str, dict] = {}
        for event in self.c.outbox.find({"state": EventState.PENDING}).sort("createdAt", 1) \
                .limit(limit):
            head = heads.get(event["stream"])
            if head is None or event["sequence"] < head["sequence"]:
                heads[event["stream"]] = event
        return sorted(heads.values(), key=lambda e: e["nextAttemptAt"])

    def stream_head(self, stream: str) -> dict | None:
        return self.c.outbox.find_one({"stream": stream, "state": EventState.PENDING},
                                      sort=[("sequence", 1)])

    def claim_event(self, event_id: str, owner: str, lease_seconds: float) -> dict | None:
        """Take a due event for one attempt (one sender per event)."""
        at = now()
        return self.c.outbox.find_one_and_update(
            {"_id": event_id, "state": EventState.PENDING, "nextAttemptAt": {"$lte": at},
             "leaseUntil": {"$lte": at}},
            {"$set": {"owner": owner, "leaseUntil": at + timedelta(seconds=lease_seconds)},
             "$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER)

    def event_sent(self, event_id: str, owner: str) -> None:
        self.c.outbox.update_one({"_id": event_id, "owner": owner},
                                 {"$set": {"state": EventState.DELIVERED, "deliveredAt": now(),
                                           "leaseUntil": EPOCH, "lastError": None}})

    def event_not_sent(self, event_id: str, owner: str, error: str,
                       retry_in: float | None) -> None:
        """An attempt failed: try again in ``retry_in`` seconds, or (None) it is dead."""
        fields: dict[str, Any] = {"lastError": error, "leaseUntil": EPOCH}
        if retry_in is None:
            fields["state"] = EventState.DEAD
        else:
            fields["nextAttemptAt"] = now() + timedelta(seconds=retry_in)
        self.c.outbox.update_one({"_id": event_id, "owner": owner}, {"$set": fields})

    def list_events(self, state: str, limit: int) -> list[dict]:
        return list(self.c.outbox.find({"state": state}).sort("createdAt", 1).limit(limit))

    def redeliver_event(self, event_id: str) -> dict | None:
        """Send an event again (dead or not), as soon as its stream's turn comes."""
        return self.c.outbox.find_one_and_update(
            {"_id": event_id},
            {"$set": {"state": EventState.PENDING, "attempts": 0, "nextAttemptAt": now(),
                      "leaseUntil": EPOCH, "owner": None}},
            return_document=ReturnDocument.AFTER)
