"""Prometheus metrics: what operators graph and alert on, with one name per fact.

The counters live in the process-wide registry, so any module (the job runner, the
webhook sender) increments them with one call; gauges that describe the database are
filled in when /metrics is scraped.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from .models import ImageRecord, ImageStatus, JobStatus

# Seconds; from a fast local host to the 30 s fetch budget.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

JOBS = Gauge("imgsvc_jobs", "Jobs in the database, by state.", ["state"])
QUEUE_DEPTH = Gauge("imgsvc_queue_depth", "Jobs waiting in the queue for a worker.")
IMAGES = Counter(
    "imgsvc_images",
    "Images that ended, by outcome; `code` is the error code of a failure, else empty.",
    ["status", "code"],
)
REUSED = Counter(
    "imgsvc_images_reused",
    "Images that succeeded with an earlier job's output, unchanged at their host: neither "
    "decoded nor encoded (and not downloaded when the host answered 304).",
)
BYTES_IN = Counter("imgsvc_bytes_in", "Bytes downloaded for images that reached Pillow.")
BYTES_OUT = Counter("imgsvc_bytes_out", "Bytes of output images written.")
FETCH_SECONDS = Histogram(
    "imgsvc_fetch_seconds", "Time to download one image, retries included.",
    buckets=DURATION_BUCKETS,
)  # fmt: skip
COMPRESS_SECONDS = Histogram(
    "imgsvc_compress_seconds", "Time to decode, re-encode and write one image.",
    buckets=DURATION_BUCKETS,
)  # fmt: skip
FETCH_BYTES_IN_FLIGHT = Gauge(
    "imgsvc_fetch_bytes_in_flight",
    "Bytes of image bodies held from download to compressed, at most IMGSVC_FETCH_BYTES.",
)
DOWNLOADS_IN_FLIGHT = Gauge(
    "imgsvc_downloads_in_flight", "Image requests sent and not yet answered in full."
)
WEBHOOK_ATTEMPTS = Counter(
    "imgsvc_webhook_attempts",
    "Webhook delivery attempts, by outcome: `delivered`, `failed` (will retry), `gave_up`.",
    ["outcome"],
)


def record_image(record: ImageRecord) -> None:
    """Count one image's outcome and its bytes (a reused image's bytes were not moved)."""
    IMAGES.labels(record.status.value, record.error_code or "").inc()
    if record.reused:
        REUSED.inc()
        return
    if record.bytes_in:
        BYTES_IN.inc(record.bytes_in)
    if record.status is ImageStatus.SUCCEEDED and record.bytes_out:
        BYTES_OUT.inc(record.bytes_out)


def webhook_attempt(outcome: str) -> None:
    """Count one webhook delivery attempt (`delivered`, `failed` or `gave_up`)."""
    WEBHOOK_ATTEMPTS.labels(outcome).inc()


def exposition(jobs_by_state: dict[str, int], queue_depth: int) -> tuple[bytes, str]:
    """The text format body and its content type, with the gauges brought up to date."""
    for state in JobStatus:
        JOBS.labels(state.value).set(jobs_by_state.get(state.value, 0))
    QUEUE_DEPTH.set(queue_depth)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
