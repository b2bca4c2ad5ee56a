"""The store on the real MongoDB-compatible server: indexes, final states that stay final,
idempotent event writes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from pymongo import ASCENDING

from shared.ids import new_id
from shared.schemas import (
    DeliveryResult,
    Event,
    EventType,
    RecipientResult,
    RecipientStatus,
    Reply,
    utcnow,
)
from shared.settings import StoreSettings
from shared.store import Store
from shared.timeline import attempt_events
from shared.views import message_view, with_status

pytestmark = pytest.mark.integration


async def seed(store: Store, *addresses: str) -> tuple[str, list[str]]:
    message_id = new_id()
    ids = [new_id() for _ in addresses]
    await store.messages.insert_message(
        {"_id": message_id, "tenant": "acme", "created_at": utcnow()},
        [
            {
                "_id": i,
                "message_id": message_id,
                "tenant": "acme",
                "address": a,
                "status": "queued",
                "attempts": 0,
            }
            for i, a in zip(ids, addresses, strict=True)
        ],
    )
    return message_id, ids


def attempted(message_id: str, results: list[RecipientResult]) -> DeliveryResult:
    return DeliveryResult(
        message_id=message_id,
        tenant="acme",
        attempt=1,
        destination="mx.ok.test:25",
        results=tuple(results),
        source_ip="192.0.2.1",
    )


def result(rid: str, status: RecipientStatus, code: int) -> RecipientResult:
    return RecipientResult(
        recipient_id=rid, address="x@ok.test", status=status, reply=Reply(code=code, text="t")
    )


async def test_attempts_are_recorded_and_final_states_stay_final(store: Store) -> None:
    """A deferral counts an attempt; a delivered recipient is not overwritten by a late
    (redelivered) deferral; pending_recipients names only the stored ones not final (a
    recipient without a document, of a message whose acceptance failed, is not pending)."""
    message_id, (a, b) = await seed(store, "a@ok.test", "b@ok.test")
    first = [result(a, RecipientStatus.DEFERRED, 451), result(b, RecipientStatus.DELIVERED, 250)]
    await store.messages.record_attempt(first, attempt_events(attempted(message_id, first)))
    assert await store.messages.pending_recipients([a, b, new_id()]) == {a}
    late = [result(b, RecipientStatus.DEFERRED, 451)]
    await store.messages.record_attempt(late)  # a redelivered job's: no event written for it
    docs = {d["_id"]: d for d in await store.messages.recipients(message_id)}
    assert (docs[a]["status"], docs[a]["attempts"], docs[a]["reply"]["code"]) == (
        "deferred",
        1,
        451,
    )
    assert (docs[b]["status"], docs[b]["reply"]["code"], docs[b]["attempts"]) == (
        "delivered",
        250,
        1,
    )
    assert [h["status"] for h in docs[b]["history"]] == ["delivered"]
    assert docs[b]["destination"] == "mx.ok.test:25" and docs[b]["source_ip"] == "192.0.2.1"


async def test_bounces_keep_their_reply_on_the_recipient(store: Store) -> None:
    """A bounce's reply is written on the recipient itself, where it outlives the events."""
    message_id, (a,) = await seed(store, "a@ok.test")
    await store.messages.record_attempt([result(a, RecipientStatus.BOUNCED, 550)])
    await store.db.events.delete_many({"message_id": message_id})  # their retention ended
    (doc,) = await store.messages.recipients(message_id)
    assert (doc["status"], doc["reply"]["code"], doc["history"]) == ("bounced", 550, [])


async def test_feedback_moves_only_what_the_transition_table_lets_it(store: Store) -> None:
    """An asynchronous bounce turns a delivered recipient (and one still waiting, when it
    comes before the attempt is written) into bounced; an expired one stays expired; the
    attempt that comes after the feedback finds the recipient final."""
    message_id, (delivered, waiting, expired) = await seed(
        store, "a@ok.test", "b@ok.test", "c@ok.test"
    )
    await store.messages.record_attempt(
        [
            result(delivered, RecipientStatus.DELIVERED, 250),
            result(expired, RecipientStatus.EXPIRED, 451),
        ]
    )
    bounce = Reply(code=550, enhanced="5.1.1", text="user unknown")
    for rid in (delivered, waiting, expired):
        await store.messages.mark_feedback(rid, RecipientStatus.BOUNCED, bounce)
    too_late = [result(waiting, RecipientStatus.DELIVERED, 250)]
    await store.messages.record_attempt(too_late)
    docs = {d["_id"]: d["status"] for d in await store.messages.recipients(message_id)}
    assert docs == {delivered: "bounced", waiting: "bounced", expired: "expired"}


async def test_events_are_stored_once_even_when_written_twice(store: Store) -> None:
    """A redelivered batch of events does not duplicate the timeline."""
    message_id = new_id()
    events = [
        Event(id=new_id(), type=t, message_id=message_id, tenant="acme")
        for t in (EventType.ACCEPTED, EventType.SIGNED)
    ]
    await store.events.append(events)
    await store.events.append(
        [
            *events,
            Event(id=new_id(), type=EventType.DELIVERED, message_id=message_id, tenant="acme"),
        ]
    )
    assert [e["type"] for e in await store.events.of_message(message_id)] == [
        "accepted",
        "signed",
        "delivered",
    ]


async def test_events_expire_after_their_retention(store: Store) -> None:
    """Events go after ``events_ttl_days``: the server's TTL index where it has one, else
    ``purge_expired()`` (the bounce service runs it under a lease); newer ones stay."""
    message_id = new_id()
    days = store.settings.events_ttl_days
    old, new = (
        Event(id=new_id(), type=t, message_id=message_id, tenant="acme", at=at)
        for t, at in (
            (EventType.ACCEPTED, utcnow() - timedelta(days=days + 1)),
            (EventType.SIGNED, utcnow()),
        )
    )
    await store.events.append([old, new])
    indexes = {i["name"] async for i in await store.db.events.list_indexes()}
    assert ("events_ttl" if store.events.ttl_index else "events_at") in indexes
    if not store.events.ttl_index:
        assert await store.events.purge_expired() == 1
        assert [e["_id"] for e in await store.events.of_message(message_id)] == [new.id]


async def test_events_are_counted_by_tenant_and_type_since_a_time(store: Store) -> None:
    """The console's overview counts: events of the asked types since a time, by tenant (one
    tenant's only when asked), read up to a cap that the answer says was reached."""
    one, two = f"t-{new_id()}", f"t-{new_id()}"
    now = utcnow()

    def event(tenant: str, type_: EventType, at: datetime) -> Event:
        return Event(id=new_id(), type=type_, message_id=new_id(), tenant=tenant, at=at)

    await store.events.append(
        [
            event(one, EventType.ACCEPTED, now),
            event(one, EventType.ACCEPTED, now),
            event(one, EventType.DELIVERED, now),
            event(one, EventType.SIGNED, now),  # not an asked type
            event(one, EventType.ACCEPTED, now - timedelta(days=2)),  # before the time
            event(two, EventType.BOUNCED, now),
        ]
    )
    since, types = now - timedelta(hours=1), ("accepted", "delivered", "bounced")
    counts, seen = await store.events.counts(since, types, cap=10_000)
    assert counts[one] == {"accepted": 2, "delivered": 1} and counts[two] == {"bounced": 1}
    assert seen >= 4
    assert await store.events.counts(since, types, tenant=one, cap=10) == (
        {one: {"accepted": 2, "delivered": 1}},
        3,
    )
    capped, seen = await store.events.counts(since, types, tenant=one, cap=2)
    assert seen == 2 and sum(capped[one].values()) == 2


async def test_discarded_messages_leave_nothing(store: Store) -> None:
    """A message discarded after a failed acceptance leaves no message, recipient or event behind
    for the dispatcher or the timeline to find."""
    message_id, _ = await seed(store, "a@ok.test", "b@ok.test")
    await store.messages.discard_message(message_id)
    assert await store.messages.message(message_id) is None
    assert await store.messages.recipients(message_id) == []
    assert await store.events.of_message(message_id) == []


async def test_state_changes_are_written_with_their_events(store: Store) -> None:
    """Acceptance and an attempt each write their events in the same group commit as the
    change; a signing is its event, which the message's view reads (stage, keys, time) without
    the signer writing on the message."""
    message_ids = []
    for _ in range(3):
        message_id = new_id()
        rid = new_id()
        accepted = Event(id=new_id(), type=EventType.ACCEPTED, message_id=message_id, tenant="t")
        await store.messages.insert_message(
            {"_id": message_id, "tenant": "t", "status": "accepted"},
            [{"_id": rid, "message_id": message_id, "tenant": "t", "status": "queued"}],
            [accepted],
        )
        message_ids.append((message_id, rid))
    dkim = {"domain": "shop.test", "selectors": "s1(rsa-sha256)", "aligned": True}
    await asyncio.gather(
        *(
            store.events.append(
                [Event(id=new_id(), type=EventType.SIGNED, message_id=m, tenant="t", detail=dkim)]
            )
            for m, _ in message_ids
        )
    )
    m, rid = message_ids[0]
    delivered = Event(id=new_id(), type=EventType.DELIVERED, message_id=m, tenant="t")
    await store.messages.record_attempt([result(rid, RecipientStatus.DELIVERED, 250)], [delivered])
    assert [e["type"] for e in await store.events.of_message(m)] == [
        "accepted",
        "signed",
        "delivered",
    ]
    signing = await store.events.signing([m for m, _ in message_ids])
    for m, _ in message_ids:
        assert (await store.messages.message(m))["status"] == "accepted"  # as written: no update
        view = await message_view(store, m)
        assert view is not None
        assert view["stage"] == "signed" and view["dkim"] == dkim
        assert view["signed_at"] == signing[m]["at"]
    listed = await with_status(store, [await store.messages.message(m) for m, _ in message_ids])
    assert [v["stage"] for v in listed] == ["signed"] * 3
    assert [v["dkim"] for v in listed] == [dkim] * 3


async def test_ensure_indexes_is_idempotent(store: Store) -> None:
    """Every service calls it at start-up; the second call changes nothing."""
    await store.ensure_indexes()
    names = {i["name"] async for i in await store.db.recipients.list_indexes()}
    assert "message_id_1" in names


async def test_suppressions_expire_and_soft_bounces_count_within_the_window(store: Store) -> None:
    """An expired suppression no longer suppresses; soft bounces outside the window are
    forgotten."""
    from datetime import timedelta

    d = store.suppressions
    await d.suppress(
        "t", "Old@X.test", reason="r", source="s", expires_at=utcnow() - timedelta(seconds=1)
    )
    await d.suppress(
        "t", "new@x.test", reason="r", source="s", expires_at=utcnow() + timedelta(days=1)
    )
    await d.suppress("t", "forever@x.test", reason="r", source="s")
    assert await d.suppressed("t", ["old@x.test", "new@x.test", "forever@x.test"]) == {
        "new@x.test",
        "forever@x.test",
    }
    assert await d.suppressed("other", ["new@x.test"]) == set()
    assert await d.soft_bounce("t", "a@x.test", window=timedelta(days=7)) == 1
    assert await d.soft_bounce("t", "a@x.test", window=timedelta(days=7)) == 2
    assert await d.soft_bounce("t", "a@x.test", window=timedelta(microseconds=1)) == 1
    # The same report applied again (a redelivered result, a resent DSN) counts once.
    week = timedelta(days=7)
    assert await d.soft_bounce("t", "b@x.test", window=week, key="r1:dsn") == 1
    assert await d.soft_bounce("t", "b@x.test", window=week, key="r1:dsn") == 1
    assert await d.soft_bounce("t", "b@x.test", window=week, key="r2:dsn") == 2


async def test_concurrent_suppression_lookups_share_a_query_but_not_their_answers(
    store: Store,
) -> None:
    """Lookups made at once for several tenants, answered by one query, each get only their own
    tenant's suppressions, addresses matched in any case."""
    d = store.suppressions
    await d.suppress("a", "x@ok.test", reason="r", source="s")
    await d.suppress("b", "y@ok.test", reason="r", source="s")
    results = await asyncio.gather(
        d.suppressed("a", ["x@ok.test", "y@ok.test"]),
        d.suppressed("b", ["x@ok.test", "Y@ok.test"]),
        d.suppressed("c", ["x@ok.test"]),
        d.suppressed("a", []),
    )
    assert results == [{"x@ok.test"}, {"y@ok.test"}, set(), set()]


async def test_concurrent_hourly_counts_neither_race_nor_lose_increments(store: Store) -> None:
    """The first increments of an hour arrive together (each ingest's accepts, and two
    instances racing to create the hour's document): every caller gets its own running count."""
    d = store.hourly
    results = await asyncio.gather(
        *(d.count("a") for _ in range(30)), *(d.count("b", 2) for _ in range(5))
    )
    assert sorted(results[:30]) == list(range(1, 31))
    assert sorted(results[30:]) == [2, 4, 6, 8, 10]
    other = type(d)(d.db)  # another instance's counts, racing for the same documents
    both = await asyncio.gather(d.count("c"), other.count("c"))
    assert sorted(both) == [1, 2]
    assert await d.count("a", -1) == 29


async def test_hourly_counts_are_kept_in_process_between_syncs_and_none_is_lost(
    store: Store,
) -> None:
    """Between syncs a process counts on its own (exact for itself, behind on the others by
    at most ``sync``); its share reaches the store with its next sync."""
    d = store.hourly
    other = type(d)(d.db)  # another ingest process
    d.sync = other.sync = 0.3
    assert await d.count("h") == 1  # asks the store
    assert await d.count("h") == 2  # counted here
    assert await other.count("h") == 2  # the store has d's first only
    assert await d.count("h") == 3  # d does not know of other's yet
    await asyncio.sleep(0.35)
    assert await d.count("h") == 5  # d's two unsynced and this one reach the store
    doc = await d.db.rates.find_one({"tenant": "h"})
    assert doc is not None and doc["count"] == 5


async def test_concurrent_sent_counts_add_up(store: Store) -> None:
    """Deliveries from one IP share one increment; none is lost."""
    d = store.pools
    await asyncio.gather(
        *(d.add_sent("127.0.0.2", 1) for _ in range(20)), d.add_sent("127.0.0.3", 3)
    )
    assert await d.sent_today() == {"127.0.0.2": 20, "127.0.0.3": 3}


async def test_one_bad_document_fails_its_own_submission_only(store: Store) -> None:
    """Messages accepted together share an insert; one the server refuses (a key it does not
    take) fails its own caller, and the others are stored whole, recipients and all."""

    async def submit(metadata: dict) -> str:
        message_id = new_id()
        await store.messages.insert_message(
            {"_id": message_id, "tenant": "acme", "created_at": utcnow(), "metadata": metadata},
            [
                {
                    "_id": new_id(),
                    "message_id": message_id,
                    "tenant": "acme",
                    "address": "a@ok.test",
                    "status": "queued",
                    "attempts": 0,
                }
            ],
        )
        return message_id

    outcomes = await asyncio.gather(
        *(submit({"$bad": "x"} if i == 3 else {"n": str(i)}) for i in range(8)),
        return_exceptions=True,
    )
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, Exception)]
    assert failed == [3], outcomes
    for o in outcomes:
        if not isinstance(o, Exception):
            assert await store.messages.message(o) is not None
            assert len(await store.messages.recipients(o)) == 1


async def test_a_tenant_s_events_are_read_in_pages_without_gaps(store: Store) -> None:
    """A replay's range is read in pages (keyset on time and id: events sharing a time are
    neither skipped nor repeated), filtered by type, another tenant's never included."""
    at = utcnow()
    events = [
        Event(
            id=new_id(),
            type=EventType.DELIVERED if i % 3 else EventType.BOUNCED,
            tenant="pager",
            message_id=new_id(),
            recipient_id=new_id(),
            address="a@ok.test",
            at=at if i < 12 else at + timedelta(seconds=i),
        )
        for i in range(25)
    ]
    await store.events.append(events)
    await store.events.append([events[0].model_copy(update={"id": new_id(), "tenant": "other"})])
    until = at + timedelta(minutes=1)
    pages = [p async for p in store.events.pages("pager", at, until, page=10)]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sorted(e["id"] for p in pages for e in p) == sorted(e.id for e in events)
    typed = store.events.pages("pager", at, until, types=["bounced"])
    bounced = [e async for p in typed for e in p]
    assert {e["type"] for e in bounced} == {"bounced"} and len(bounced) == 9


async def test_raw_reports_expire_after_their_retention(store: Store) -> None:
    """Inbound reports kept raw go after 30 days: the server's TTL index where it has one,
    else purge() (the bounce service runs it under a lease)."""
    from services.bounce.reports import ReportStore

    reports = ReportStore(store.db)
    await reports.ensure_indexes()
    old = await reports.keep(b"From: x\r\n\r\nold", peer="127.0.0.1", rcpt_tos=["a@b.test"])
    new = await reports.keep(b"From: x\r\n\r\nnew", peer="127.0.0.1", rcpt_tos=["a@b.test"])
    await store.db.reports.update_one(
        {"_id": old}, {"$set": {"received_at": utcnow() - timedelta(days=31)}}
    )
    if not reports.ttl_index:
        assert await reports.purge() == 1
        assert await reports.get(old) is None
    assert (await reports.get(new))["raw"] == b"From: x\r\n\r\nnew"


async def test_an_idempotency_key_is_leased_and_its_answer_kept_a_while(store: Store) -> None:
    """A request that died holding a key blocks it only until its lease runs out; an answer
    is replayed until its time is up, then the key is free."""
    from shared.directory import Idempotency, IdempotencyConflict

    keys = Idempotency(store.db, lease=0.3, ttl=0.3)
    assert await keys.begin("acme", "k1", "h") is None
    with pytest.raises(IdempotencyConflict):
        await keys.begin("acme", "k1", "h")  # still held
    await asyncio.sleep(0.4)
    assert await keys.begin("acme", "k1", "h") is None  # the dead request's lease ran out
    await keys.finish("acme", "k1", 202, {"id": "m1"})
    assert (await keys.begin("acme", "k1", "h"))["body"] == {"id": "m1"}
    with pytest.raises(IdempotencyConflict):
        await keys.begin("acme", "k1", "other request")
    await asyncio.sleep(0.4)
    assert await keys.begin("acme", "k1", "other request") is None  # kept a while, not for ever
    assert await keys.purge() >= 0


async def test_messages_go_after_their_retention_and_waiting_mail_stays(store: Store) -> None:
    """A message all of whose recipients are final since before its tenant's retention goes,
    with its recipients and events; one with a recipient still waiting stays, whatever its
    age; a tenant's own retention counts over the default."""
    done, _ = await seed(store, "a@ok.test")
    waiting, (_, queued) = await seed(store, "b@ok.test", "c@ok.test")
    recent, _ = await seed(store, "d@ok.test")
    long_ago = utcnow() - timedelta(days=40)
    for message_id in (done, waiting):
        await store.db.recipients.update_many(
            {"message_id": message_id, "_id": {"$ne": queued}},
            {"$set": {"status": "delivered", "finished_at": long_ago}},
        )
    await store.db.recipients.update_many(
        {"message_id": recent}, {"$set": {"status": "bounced", "finished_at": utcnow()}}
    )
    await store.events.append(
        [Event(id=new_id(), type=EventType.DELIVERED, tenant="acme", message_id=done)]
    )
    assert await store.messages.purge_finished(30, {"acme": 365}) == 0  # acme keeps a year
    assert await store.messages.purge_finished(30, {}) == 1
    assert (
        await store.messages.message(done) is None and await store.messages.recipients(done) == []
    )
    assert await store.events.of_message(done) == []
    assert await store.messages.message(waiting) is not None  # c@ is still queued
    assert await store.messages.message(recent) is not None


async def test_a_bounce_whose_result_was_not_reported_is_named_until_it_is(store: Store) -> None:
    """A bounce written but not yet confirmed to the bounce service stays `result_pending`:
    pending_recipients names it `!<id>` (a redelivered job publishes it again) until
    results_reported() says the bounce service has it."""
    _, (a, b) = await seed(store, "a@ok.test", "b@ok.test")
    bounced = [result(a, RecipientStatus.BOUNCED, 550)]
    await store.messages.record_attempt(bounced)
    assert await store.messages.pending_recipients([a, b]) == {f"!{a}", b}
    missed = await store.messages.unreported_results([a])
    assert [(d["_id"], d["status"], d["reply"]["code"]) for d in missed] == [(a, "bounced", 550)]
    await store.messages.results_reported([a])
    assert await store.messages.pending_recipients([a, b]) == {b}
    assert await store.messages.unreported_results([a]) == []


async def test_list_scoped_suppressions_and_the_index_before_scopes(
    store_settings: StoreSettings,
) -> None:
    """A store made before scopes (unique per tenant and address, documents without a scope)
    takes an unsubscribe beside an existing suppression; a scoped one stops only its list's
    mail, a global one all; an unsubscribe made twice is one document, made once."""
    s = Store(store_settings)
    try:
        await s.db.suppressions.create_index(
            [("tenant", ASCENDING), ("address", ASCENDING)], unique=True
        )
        await s.db.suppressions.insert_one({"tenant": "t", "address": "old@x.test"})
        await s.ensure_indexes()
        d = s.suppressions
        doc, created = await d.unsubscribe("t", "Old@x.test", scope="list:news", source="s")
        assert created and doc["scope"] == "list:news" and doc["announced"] is False
        again, created = await d.unsubscribe("t", "old@x.test", scope="list:news", source="s")
        assert not created and again["_id"] == doc["_id"]
        await d.unsubscribe("t", "reader@x.test", scope="list:news", source="s")
        assert await d.suppressed("t", ["old@x.test", "reader@x.test"]) == {"old@x.test"}
        assert await d.suppressed("t", ["old@x.test", "reader@x.test"], scopes={"list:news"}) == {
            "old@x.test",
            "reader@x.test",
        }
        assert await d.suppressed("t", ["reader@x.test"], scopes={"list:offers"}) == set()
        assert await d.suppressed("u", ["reader@x.test"], scopes={"list:news"}) == set()
        await d.suppress("t", "old@x.test", reason="r", source="s")  # the old one, not a third
        assert await s.db.suppressions.count_documents({"address": "old@x.test"}) == 2
        page = await d.page("t", limit=1)  # a page never ends inside an address
        assert [(x["address"], x.get("scope")) for x in page] == [
            ("old@x.test", None),
            ("old@x.test", "list:news"),
        ]
        rest = await d.page("t", limit=1, after=page[-1]["address"])
        assert [x["address"] for x in rest] == ["reader@x.test"]
        assert await d.unsuppress("t", "reader@x.test", scope="list:news")
        assert await d.suppressed("t", ["reader@x.test"], scopes=["list:news"]) == set()
    finally:
        await s.client.drop_database(store_settings.database)
        await s.close()
