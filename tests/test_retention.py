"""Retention: expired sessions and idempotency records are deleted in batches, by a Temporal
Schedule of the worker's own, and counted; what is still in use is never touched. The cache
lives apart from the seat holds."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from temporalio.client import Client, ScheduleOverlapPolicy

from common import metrics, temporal_client
from flights import holds
from orders.models import OrderRequest, RequestKind, RequestState
from orders.retention import purge_expired
from temporal_worker.schedules import retention_schedule_id
from tests.conftest import WorkerProcess
from tests.helpers import wait_for

KEEP = timedelta(hours=24)


def deleted(kind: str) -> float:
    return metrics.RETENTION_DELETED.labels(kind=kind)._value.get()


def make_sessions(count: int, *, expired: bool) -> None:
    now = timezone.now()
    expiry = now - timedelta(seconds=1) if expired else now + timedelta(days=1)
    Session.objects.bulk_create(
        Session(session_key=uuid.uuid4().hex, session_data="e30:", expire_date=expiry) for _ in range(count)
    )


def make_requests(count: int, *, state: RequestState, age: timedelta) -> None:
    rows = OrderRequest.objects.bulk_create(
        OrderRequest(
            session_key=uuid.uuid4().hex,
            idempotency_key=uuid.uuid4().hex,
            fingerprint="0" * 64,
            kind=RequestKind.CREATE,
            update_id=uuid.uuid4().hex,
            state=state,
            lease_until=timezone.now(),
        )
        for _ in range(count)
    )
    # (update() leaves auto_now alone: the rows look last changed `age` ago)
    OrderRequest.objects.filter(pk__in=[row.pk for row in rows]).update(updated_at=timezone.now() - age)


@pytest.mark.django_db
def test_only_what_is_past_its_lifetime_is_deleted_in_batches():
    make_sessions(25, expired=True)
    make_sessions(3, expired=False)
    make_requests(11, state=RequestState.DONE, age=KEEP + timedelta(minutes=1))
    make_requests(4, state=RequestState.LOST, age=KEEP + timedelta(minutes=1))
    make_requests(5, state=RequestState.DONE, age=KEEP - timedelta(minutes=5))  # a retry may still come
    # Outcome not known yet, however old: the reconciliation settles them first.
    make_requests(2, state=RequestState.UNKNOWN, age=KEEP * 10)
    make_requests(1, state=RequestState.RUNNING, age=KEEP * 10)
    before = {kind: deleted(kind) for kind in ("session", "order_request")}
    beats: list[None] = []

    purged = purge_expired(keep_requests=KEEP, batch_size=10, on_batch=lambda: beats.append(None))

    assert purged.deleted == {"session": 25, "order_request": 15}
    assert purged.batches == 3 + 2 == len(beats), "10 + 10 + 5 sessions, 10 + 5 requests"
    assert Session.objects.count() == 3
    assert Session.objects.filter(expire_date__lt=timezone.now()).count() == 0
    assert sorted(OrderRequest.objects.values_list("state", flat=True)) == sorted(
        ["done"] * 5 + ["unknown"] * 2 + ["running"]
    )
    assert deleted("session") - before["session"] == 25
    assert deleted("order_request") - before["order_request"] == 15
    assert purge_expired(keep_requests=KEEP, batch_size=10).deleted == {"session": 0, "order_request": 0}


@pytest.mark.django_db
def test_a_session_in_use_is_kept(client):
    client.get("/")
    store = SessionStore()
    store["x"] = 1
    store.create()  # a live session, and the one the page made
    make_sessions(2, expired=True)

    purge_expired(keep_requests=KEEP, batch_size=100)

    assert SessionStore().exists(store.session_key)
    assert Session.objects.count() >= 1


@pytest.mark.django_db
def test_the_command_purges_once(capsys):
    make_sessions(3, expired=True)
    make_requests(2, state=RequestState.DONE, age=KEEP * 2)

    call_command("purge_expired", "--batch-size", "2")

    assert "Deleted 3 expired sessions and 2 idempotency records" in capsys.readouterr().out
    assert Session.objects.count() == OrderRequest.objects.count() == 0


@pytest.mark.django_db
def test_a_few_thousand_expired_rows_are_deleted_in_bounded_batches(capsys):
    make_sessions(5000, expired=True)
    make_requests(5000, state=RequestState.DONE, age=KEEP * 2)
    make_requests(100, state=RequestState.DONE, age=timedelta(0))

    started = time.perf_counter()
    purged = purge_expired(keep_requests=KEEP, batch_size=1000)
    seconds = time.perf_counter() - started

    assert purged.deleted == {"session": 5000, "order_request": 5000}
    assert purged.batches == 10
    assert OrderRequest.objects.count() == 100
    with capsys.disabled():
        print(f"\n[retention] 10000 rows in {purged.batches} batches of 1000: {seconds:.2f} s")


def test_the_worker_keeps_a_retention_schedule_and_it_deletes(stack):
    queue = f"retention-test-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(
        env={**stack.worker.env, "TEMPORAL_TASK_QUEUE": queue, "RETENTION_EVERY": "1h"},
        log=stack.worker.log.with_name("retention-worker.log"),
    )
    schedule_id = retention_schedule_id(queue)
    make_sessions(7, expired=True)
    make_requests(3, state=RequestState.DONE, age=KEEP * 2)

    async def describe(client: Client):  # type: ignore[no-untyped-def]
        return await client.get_schedule_handle(schedule_id).describe()

    try:
        worker.log.write_bytes(b"")
        worker.start()
        schedule = wait_for(lambda: temporal_client.call(describe), timeout=30, what="the schedule").schedule
        assert [spec.every for spec in schedule.spec.intervals] == [timedelta(hours=1)]
        assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP

        temporal_client.call(lambda c: c.get_schedule_handle(schedule_id).trigger())
        wait_for(
            lambda: (
                Session.objects.filter(expire_date__lt=timezone.now()).count() == 0
                and OrderRequest.objects.count() == 0
            ),
            timeout=30,
            what="the scheduled purge to delete the expired rows",
        )
    finally:
        if worker.process is not None:
            worker.stop()
        temporal_client.call(lambda c: c.get_schedule_handle(schedule_id).delete())


@pytest.mark.django_db
def test_the_cache_never_shares_the_seat_holds_redis_database():
    holds_db = holds.connection().connection_pool.connection_kwargs
    cache_db = cache.client.get_client().connection_pool.connection_kwargs

    assert (holds_db.get("port"), holds_db["db"]) != (cache_db.get("port"), cache_db["db"])
    assert django_settings.CACHES["holds"]["LOCATION"] == django_settings.REDIS_URL
    key = f"retention-test-{uuid.uuid4().hex}"
    cache.set(key, "x", 60)
    assert holds.connection().exists(f":1:{key}") == 0, "a cache entry is not in the holds' database"
    holds.connection().flushdb()  # the holds' database emptied: the cache is not
    assert cache.get(key) == "x"
    # The holds' Redis evicts nothing: a full memory refuses a write, never drops a hold.
    assert holds.connection().config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
