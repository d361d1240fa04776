"""The service's nouns: job and image states, and the plain records passed between modules."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class JobOptions:
    """How a job's images are encoded, chosen at upload."""

    quality: int
    max_dimension: int | None
    format: str


@dataclass(frozen=True)
class Job:
    """A job row: what was asked and how far it has come."""

    id: str
    status: JobStatus
    message: str
    created_at: str
    updated_at: str
    completed_at: str | None
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


@dataclass(frozen=True)
class PendingImage:
    """One input URL occurrence still to be produced; (product_seq, position) orders a job."""

    product_seq: int
    position: int
    url: str


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


@dataclass(frozen=True)
class ProductRecord:
    """A product with its cells as uploaded and its images in input order."""

    seq: int
    line: int
    serial_number: str
    product_name: str
    cells: tuple[str, ...]
    images: tuple[ImageRecord, ...]
