"""Webhooks: the message written when a job ends (an outbox row), and the sender that
delivers it, signed per Standard Webhooks, with retries that survive restarts.

The outbox row is committed with the job's terminal state (`Database.finish_job`), so a
crash cannot end a job without its webhook. The sender claims due rows (so each attempt is
made by one process), records every attempt, and sets the next one; it wakes when a row
is written and when the database says the next one falls due.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from .. import metrics
from ..api import payloads
from ..config import Settings
from ..db import Database
from ..models import Delivery, DeliveryAttempt, DeliveryState, Job, OutboxEntry
from . import signing
from .netguard import AddressPolicy, blocked_cause
from .outbound import guarded_session, parse_retry_after

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 16  # deliveries sent at once; a receiver that hangs holds only its own slot
IDLE_WAKE = 60.0  # seconds; the longest the sender sleeps without looking at the outbox
SOONEST_LOOK = 0.01  # seconds; a delivery due already is claimed after at least this pause
LEASE_MARGIN = 30.0  # seconds a claim outlives the attempt's timeout
ERROR_PAUSE = 5.0  # seconds before looking again after the outbox could not be read
MAX_RETRY_AFTER = 86_400.0  # a receiver's Retry-After is honoured up to a day
JITTER = 0.2  # each delay is stretched by up to this fraction, so receivers are not stampeded
EXCERPT = 200  # characters of a failing receiver's answer kept in the attempt log
USER_AGENT = "imgsvc/0.1 (webhook)"
RETRY_AFTER_STATUSES = frozenset({429, 503})
PERMANENT_ERRORS = frozenset({"blocked_address", "invalid_url"})
# An attempt's outcome as /metrics counts it, by where it left the delivery.
OUTCOMES = {
    DeliveryState.DELIVERED: "delivered",
    DeliveryState.PENDING: "failed",
    DeliveryState.FAILED: "gave_up",
}

Found = tuple[Delivery, list[DeliveryAttempt]] | None


def outbox_entry(job: Job) -> OutboxEntry | None:
    """The webhook message for a job that has just ended; None when it has no webhook URL."""
    if job.webhook_url is None:
        return None
    stamp = datetime.now(UTC)
    links = payloads.links(job)
    body = {
        "type": f"job.{job.status.value}",
        "timestamp": payloads.timestamp(stamp),
        "data": payloads.status_object(job)
        | {"download_url": links["download_url"], "details_url": links["details_url"]},
        # Beside the Standard Webhooks envelope, the replaced service's flat fields.
        "request_id": job.id,
        "status": job.status.value,
        **payloads.replaced_service_fields(job),
    }
    return OutboxEntry(
        id=f"msg_{secrets.token_hex(16)}",
        job_id=job.id,
        url=job.webhook_url,
        payload=json.dumps(body, separators=(",", ":")),
        created_at=stamp,
    )


async def signing_secrets(settings: Settings, db: Database) -> list[str]:
    """The secrets that sign webhooks: the configured ones, else the service's own, kept in
    the database (generated on first use)."""
    return list(settings.webhook_secrets) or [await db.webhook_secret(signing.generate_secret)]


def webhook_object(job: Job, found: Found) -> dict[str, Any]:
    """The `webhook` part of the details: where the job's webhook stands, every attempt."""
    if job.webhook_url is None:
        return {"url": None, "state": "none", "id": None, "attempts": [], "next_attempt_at": None}
    if found is None:  # the job has not ended yet: the message is written when it does
        return {"url": job.webhook_url, "state": DeliveryState.PENDING.value, "id": None,
                "attempts": [], "next_attempt_at": None}  # fmt: skip
    delivery, attempts = found
    return {
        "url": delivery.url,
        "state": delivery.state.value,
        "id": delivery.id,
        "attempts": [_attempt_object(a) for a in attempts],
        "next_attempt_at": payloads.timestamp(delivery.next_attempt_at),
    }


def _attempt_object(attempt: DeliveryAttempt) -> dict[str, Any]:
    error = None
    if attempt.error_code is not None:
        error = {"code": attempt.error_code, "message": attempt.error_message}
    return {
        "number": attempt.number,
        "at": payloads.timestamp(attempt.at),
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "error": error,
    }


async def start_sender(settings: Settings, db: Database, owner: str) -> WebhookSender:
    """A running sender for the service's settings (the lifespan stops it); `owner` names
    this process in the claims it makes."""
    secrets_ = await signing_secrets(settings, db)
    sender = WebhookSender(
        db,
        owner,
        settings.address_policy,
        [signing.secret_key(s) for s in secrets_],
        settings.webhook_retry_schedule,
        settings.webhook_timeout,
    )
    sender.start()
    return sender


class WebhookSender:
    """Sends due outbox rows through one guarded session, never following redirects."""

    def __init__(
        self,
        db: Database,
        owner: str,
        policy: AddressPolicy,
        keys: list[bytes],
        schedule: tuple[float, ...],
        timeout: float,
    ) -> None:
        self._db = db
        self._owner = owner
        self._policy = policy
        self._keys = keys
        self._schedule = schedule
        self._timeout = timeout
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._session = guarded_session(self._policy, MAX_IN_FLIGHT)
        self._loop_task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop sending; an attempt cut short is not recorded: once its claim runs out, it is
        made again (by this process after a restart, or by another one)."""
        tasks = [t for t in (self._loop_task, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _loop(self) -> None:
        wake = self._db.outbox_written
        while True:
            wake.clear()
            try:
                idle = await self._send_due()
            except Exception:
                # The outbox persists, so after a database hiccup the next pass picks it up.
                log.exception("the webhook sender could not read the outbox")
                idle = ERROR_PAUSE
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle):
                    await wake.wait()

    async def _send_due(self) -> float:
        """Claim and start what is due; how long to sleep before looking again.

        "Due" and "how long until the next is due" both come from one look at the database,
        so a delivery falling due in between is either claimed or waited for, never lost
        until something else wakes the sender."""
        free = MAX_IN_FLIGHT - len(self._in_flight)
        if free == 0:
            return IDLE_WAKE  # the end of an attempt wakes the sender
        lease = self._timeout + LEASE_MARGIN
        claimed, due_in = await self._db.claim_deliveries(self._owner, lease, free)
        for delivery in claimed:
            self._in_flight[delivery.id] = asyncio.create_task(self._deliver(delivery))
        if due_in is None:
            return IDLE_WAKE
        return min(max(due_in, SOONEST_LOOK), IDLE_WAKE)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            attempt, retry_after = await self._attempt(delivery)
            state, retry_in = self._after(delivery, attempt, retry_after)
            await self._db.record_attempt(delivery.id, attempt, state, retry_in)
            metrics.webhook_attempt(OUTCOMES[state])
            log.info("webhook %s for job %s: attempt %d %s (%s)", delivery.id, delivery.job_id,
                     attempt.number, attempt.status_code or attempt.error_code, state)  # fmt: skip
        except Exception:
            log.exception("webhook %s could not be sent", delivery.id)
        finally:
            del self._in_flight[delivery.id]
            self._db.outbox_written.set()

    async def _attempt(self, delivery: Delivery) -> tuple[DeliveryAttempt, float | None]:
        """One POST; how it ended, and the receiver's Retry-After if it sent one."""
        assert self._session is not None
        body = delivery.payload.encode()
        headers = signing.headers(self._keys, delivery.id, int(time.time()), body)
        headers |= {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        number, at, started = delivery.attempts + 1, datetime.now(UTC), time.monotonic()
        retry_after = None
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._session.post(
                    delivery.url, data=body, headers=headers, allow_redirects=False
                ) as response,
            ):
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                code, message = await _judge(response)
        except TimeoutError:
            status, code, message = None, "timeout", f"no answer within {self._timeout:g} s"
        except aiohttp.ClientError as exc:
            status, (code, message) = None, _client_error(exc)
        duration = round((time.monotonic() - started) * 1000)
        return DeliveryAttempt(number, at, duration, status, code, message), retry_after

    def _after(
        self, delivery: Delivery, attempt: DeliveryAttempt, retry_after: float | None
    ) -> tuple[DeliveryState, float | None]:
        """Where a delivery stands after an attempt, and in how many seconds the next is due."""
        if attempt.error_code is None:
            return DeliveryState.DELIVERED, None
        in_round = attempt.number - delivery.round_start
        if (
            attempt.status_code == 410
            or attempt.error_code in PERMANENT_ERRORS
            or in_round > len(self._schedule)
        ):
            return DeliveryState.FAILED, None
        delay = self._schedule[in_round - 1] * random.uniform(1.0, 1.0 + JITTER)
        if attempt.status_code in RETRY_AFTER_STATUSES and retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER)
        return DeliveryState.PENDING, delay


async def _judge(response: aiohttp.ClientResponse) -> tuple[str | None, str | None]:
    """(None, None) for a 2xx; otherwise an error code and a message with the answer's start."""
    status = response.status
    if 200 <= status < 300:
        return None, None
    text = (await response.content.read(EXCERPT)).decode("utf-8", "replace").strip()
    message = f"the receiver answered HTTP {status} {response.reason or ''}".rstrip()
    if 300 <= status < 400:
        location = response.headers.get("Location", "nowhere")
        message += f" to {location}; webhooks do not follow redirects"
    elif status == 410:
        message += "; no more attempts will be made"
    if text:
        message += f": {text}"
    return "http_error", message


def _client_error(exc: aiohttp.ClientError) -> tuple[str, str]:
    blocked = blocked_cause(exc)
    if blocked is not None:
        return "blocked_address", f"{blocked}; see IMGSVC_ALLOW_NETWORKS"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid_url", f"the webhook URL is not valid: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns_error", f"the host name could not be resolved: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect_error", f"could not connect: {exc.os_error}"
    return "connect_error", f"the connection failed: {exc}"
