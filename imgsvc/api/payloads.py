"""The JSON bodies the API (and the webhook) send, built from plain records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from .. import paths
from ..models import ImageRecord, ImageStatus, Job, JobStatus, ProductRecord


@overload
def timestamp(moment: datetime) -> str: ...
@overload
def timestamp(moment: None) -> None: ...
def timestamp(moment: datetime | None) -> str | None:
    """A time as the API shows it: ISO 8601 in UTC with milliseconds and a `Z`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def image_url(base_url: str, name: str) -> str:
    """The absolute URL of an output image."""
    return base_url + paths.fill(paths.IMAGE, filename=name)


def status_message(job: Job) -> str:
    """A sentence a person reads to know where the job stands."""
    if job.status is JobStatus.PENDING:
        return "waiting for a worker"
    if job.status is JobStatus.PROCESSING:
        return f"processed {job.processed_images} of {job.total_images} images"
    if job.status is JobStatus.COMPLETED:
        failed = f", {job.failed_images} failed" if job.failed_images else ""
        reused = f" ({job.reused_images} unchanged, reused)" if job.reused_images else ""
        produced = f"{job.succeeded_images} of {job.total_images} images produced"
        return f"completed: {produced}{reused}{failed}"
    return job.message


def percentage(job: Job) -> float:
    """How much of the job has ended, 0-100, to one decimal."""
    done = 100.0 * job.processed_images / job.total_images if job.total_images else 0.0
    return round(done, 1)


def status_object(job: Job) -> dict[str, Any]:
    """The status object of the design: state, message, progress and times."""
    return {
        "request_id": job.id,
        "status": job.status.value,
        "message": status_message(job),
        "progress": {
            "total_products": job.total_products,
            "processed_products": job.processed_products,
            "total_images": job.total_images,
            "processed_images": job.processed_images,
            "succeeded_images": job.succeeded_images,
            "failed_images": job.failed_images,
            "reused_images": job.reused_images,
            "percentage": percentage(job),
        },
        "created_at": timestamp(job.created_at),
        "updated_at": timestamp(job.updated_at),
        "completed_at": timestamp(job.completed_at),
    }


LINKS = {
    "status_url": paths.STATUS,
    "details_url": paths.DETAILS,
    "download_url": paths.DOWNLOAD,
    "events_url": paths.EVENTS,
    "archive_url": paths.ARCHIVE,
}


def replaced_service_fields(job: Job) -> dict[str, Any]:
    """The flat progress fields of the service imgsvc replaces, which its clients read."""
    return {
        "total_products": job.total_products,
        "processed_products": job.processed_products,
        "completion_percentage": percentage(job),
    }


def links(job: Job) -> dict[str, str]:
    """Where to look at the job next: its absolute URLs, by the fields answers name them."""
    return {key: job.base_url + paths.fill(path, request_id=job.id) for key, path in LINKS.items()}


def upload_answer(job: Job) -> dict[str, Any]:
    """The 202 body: the request id, what was accepted, and where to look next."""
    products = f"{job.total_products} product{'s' if job.total_products != 1 else ''}"
    count = f"{job.total_images} image{'s' if job.total_images != 1 else ''}"
    return {
        "request_id": job.id,
        "status": job.status.value,
        "message": f"accepted {products}, {count}",
        "total_products": job.total_products,
        "total_images": job.total_images,
        "webhook_url": job.webhook_url,
        **links(job),
    }


def details_object(
    job: Job,
    products: list[ProductRecord],
    offset: int,
    limit: int,
    in_flight: frozenset[str],
) -> dict[str, Any]:
    """The status object, then a page of products with every image's outcome; pending
    images whose URL is `in_flight` show as processing."""
    return {
        **status_object(job),
        "csv_filename": job.csv_filename,
        **replaced_service_fields(job),
        "options": {
            "quality": job.options.quality,
            "max_dimension": job.options.max_dimension,
            "format": job.options.format,
            "progressive": job.options.progressive,
            "sizes": list(job.options.sizes),
            "reuse": job.options.reuse,
        },
        "offset": offset,
        "limit": limit,
        "products": [_product(job.base_url, p, in_flight) for p in products],
    }


def _product(base_url: str, product: ProductRecord, in_flight: frozenset[str]) -> dict[str, Any]:
    images = [_image(base_url, i, i.url in in_flight) for i in product.images]
    return {
        "serial_number": product.serial_number,
        "product_name": product.product_name,
        "status": _product_status([ImageStatus(i["status"]) for i in images]).value,
        "line": product.line,
        "input_image_urls": [i["input_url"] for i in images],
        "output_image_urls": [i["output_url"] for i in images],
        "images": images,
    }


def _product_status(images: list[ImageStatus]) -> JobStatus:
    """A product's state in the job's words: pending until one of its images moves, then
    processing until all have ended; then cancelled if one was, failed if none succeeded."""
    ended = [s for s in images if s not in (ImageStatus.PENDING, ImageStatus.PROCESSING)]
    if len(ended) < len(images):
        moving = ended or ImageStatus.PROCESSING in images
        return JobStatus.PROCESSING if moving else JobStatus.PENDING
    if ImageStatus.CANCELLED in images:
        return JobStatus.CANCELLED
    return JobStatus.COMPLETED if ImageStatus.SUCCEEDED in images else JobStatus.FAILED


def _image(base_url: str, image: ImageRecord, in_flight: bool) -> dict[str, Any]:
    error = {"code": image.error_code, "message": image.error_message} if image.error_code else None
    status = image.status
    if in_flight and status is ImageStatus.PENDING:
        status = ImageStatus.PROCESSING
    return {
        "input_url": image.url,
        "output_url": image_url(base_url, image.output_name) if image.output_name else None,
        "status": status.value,
        "error": error,
        "bytes_in": image.bytes_in,
        "bytes_out": image.bytes_out,
        "width": image.width,
        "height": image.height,
        "kept_input": image.kept_input,
        "reused": image.reused,
        "renditions": [
            {
                "size": r.size,
                "output_url": image_url(base_url, r.output_name),
                "width": r.width,
                "height": r.height,
                "bytes_out": r.bytes_out,
            }
            for r in image.renditions
        ],
    }
