"""The service's nouns: job and image states, and the plain records passed between modules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"  # accepted and committed, waiting for a worker
    PROCESSING = "processing"  # a worker is fetching and compressing its images
    COMPLETED = "completed"  # every image ended; some may have failed
    FAILED = "failed"  # no image could be produced, or the job itself could not run
    CANCELLED = "cancelled"  # stopped on request; unfinished images were cancelled

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class ImageStatus(StrEnum):
    PENDING = "pending"  # not yet produced (in-flight images are shown as processing)
    PROCESSING = "processing"  # being fetched or compressed right now; never stored
    SUCCEEDED = "succeeded"  # the output file exists under its output name
    FAILED = "failed"  # ended with an error code and message
    CANCELLED = "cancelled"  # the job was cancelled before this image ended


class OutputFormat(StrEnum):
    """The formats a job's images can be written in (the value is what is stored)."""

    JPEG = "jpeg"  # the default: every browser and every shop system reads it
    WEBP = "webp"  # smaller at the same quality, for callers that ask for it
    AVIF = "avif"  # smaller still at a better look, slower to encode; current browsers only

    @property
    def extension(self) -> str:
        """The file name extension for this format, without the dot."""
        return "jpg" if self is OutputFormat.JPEG else self.value

    @property
    def content_type(self) -> str:
        """The media type a file in this format is served with."""
        return f"image/{self.value}"


@dataclass(frozen=True)
class JobOptions:
    """How a job's images are made, chosen at upload."""

    quality: int
    max_dimension: int | None
    format: OutputFormat
    progressive: bool = False  # JPEG only: a blurred whole first, sharpened as it loads
    # Longest sides in pixels of the extra outputs each image also gets, in the order asked.
    sizes: tuple[int, ...] = ()
    reuse: bool = True  # an earlier job's output of an unchanged image may be reused

    def output_key(self) -> str:
        """The options that make an output what it is, as one text: outputs are reused
        only between jobs whose keys are equal. Every option joins it except those listed
        in NOT_OUTPUT, so an option added later can never let a different output pass for
        the same one."""
        shaping = {k: v for k, v in asdict(self).items() if k not in NOT_OUTPUT}
        return json.dumps(shaping, sort_keys=True, separators=(",", ":"))


# The options that do not change a job's outputs, left out of JobOptions.output_key.
NOT_OUTPUT = frozenset({"reuse"})


@dataclass(frozen=True)
class Job:
    """A job row: what was asked and how far it has come."""

    id: str
    status: JobStatus
    message: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    base_url: str
    webhook_url: str | None
    options: JobOptions
    header: tuple[str, ...]
    total_products: int
    total_images: int
    processed_products: int
    processed_images: int
    succeeded_images: int
    failed_images: int
    csv_filename: str | None = None  # the uploaded file's name; None for a raw text/csv body
    reused_images: int = 0  # succeeded with an earlier job's output, neither decoded nor encoded


@dataclass(frozen=True, slots=True)
class Product:
    """One product row as uploaded: where it starts, its checked values and its cells."""

    line: int
    serial_number: str
    product_name: str
    urls: tuple[str, ...]
    cells: tuple[str, ...]


class WorkKind(StrEnum):
    SLICE = "slice"  # produce the pending images of one slice of a job's distinct URLs
    FINISH = "finish"  # every slice is done: write the results and end the job
    CANCEL = "cancel"  # end a job on request, once no slice of it is being worked on


@dataclass(frozen=True)
class WorkItem:
    """A unit of work claimed from the database, held under a lease until it is done."""

    id: int
    job_id: str
    kind: WorkKind
    slice: int | None  # the slice number, for WorkKind.SLICE


@dataclass(frozen=True, slots=True)
class Rendition:
    """One extra output of an image, made for one of the job's sizes."""

    size: int  # the size asked for: the longest side, unless the image is smaller
    output_name: str
    width: int
    height: int
    bytes_out: int


@dataclass(frozen=True)
class ImageRecord:
    """How one URL of a job stands; an ended URL applies to every occurrence of it in the job."""

    url: str
    status: ImageStatus
    output_name: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    width: int | None = None
    height: int | None = None
    # The input's own picture, stripped of metadata, was kept because it was smaller than
    # a new encoding; None until the image has been produced.
    kept_input: bool | None = None
    # The output is an earlier job's, reused because the image had not changed.
    reused: bool = False
    renditions: tuple[Rendition, ...] = ()  # one per job size, in the job's order, once produced

    def output_names(self, sizes: Sequence[int]) -> list[str | None]:
        """The main output's name, then the name made for each of `sizes` (None: none)."""
        by_size = {r.size: r.output_name for r in self.renditions}
        return [self.output_name, *(by_size.get(size) for size in sizes)]


@dataclass(frozen=True)
class Validators:
    """What an image host said identifies the version of an image it sent (its ETag and
    Last-Modified headers); asking with them lets it answer 304 Not Modified."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class EarlierOutput:
    """What a job made from a URL, remembered for the later jobs of the same owner with the
    same output options: how to ask the host whether the image changed, the SHA-256 of the
    body it sent, and the image's outcome (its output and what describes it)."""

    validators: Validators
    sha256: str  # hex
    outcome: ImageRecord  # succeeded; its url is the URL


@dataclass(frozen=True)
class ProductRecord:
    """A product with its cells as uploaded and its images in input order."""

    seq: int
    line: int
    serial_number: str
    product_name: str
    cells: tuple[str, ...]
    images: tuple[ImageRecord, ...]


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or not sent yet)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # retries ran out, the receiver answered 410, or its address is refused


@dataclass(frozen=True)
class OutboxEntry:
    """A webhook message written with the job's terminal state, to be sent by the sender."""

    id: str  # the `webhook-id` header: the same on every attempt and redelivery
    job_id: str
    url: str
    payload: str  # the JSON body, fixed when the job ended
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    """An outbox row as the sender sees it: the message and where its attempts stand."""

    id: str
    job_id: str
    url: str
    payload: str
    state: DeliveryState
    attempts: int  # attempts made so far, redeliveries included
    round_start: int  # attempts made before the current round (a redelivery starts a round)
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST to a webhook receiver and how it ended."""

    number: int
    at: datetime
    duration_ms: int
    status_code: int | None = None  # the receiver's HTTP status, when it answered
    error_code: str | None = None  # timeout, connect_error, blocked_address, http_error, ...
    error_message: str | None = None
