"""Settings: one frozen object read from the environment in one place.

Parsed here rather than by a settings library: the dataclass's fields are the one list of
settings and `from_env` walks them, parsing each by its declared type, so a new setting is
one line. Starlette's `Config` (already installed), environs or decouple would have every
variable named again with its cast, and none reads our few shapes (CIDR lists, key
lists, a delay schedule) without the same code as `_parse`; pydantic-settings would bring
pydantic, which the service does not otherwise need.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .pipeline.parse import CsvLimits
from .pipeline.signing import secret_key

if TYPE_CHECKING:
    from .pipeline.netguard import AddressPolicy, Network

MIB = 1024 * 1024
# Seconds between webhook attempts: the Standard Webhooks schedule, about 27 hours in all.
WEBHOOK_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MIN_KEY_LENGTH = 16  # an API key shorter than this could be guessed
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's rule for a bucket name
DATABASE_SCHEMES = ("postgresql://", "postgres://")  # what IMGSVC_DATABASE_URL may name


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told; defaults are what `make run` uses."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("storage")
    public_url: str | None = None
    allow_private_urls: bool = False
    allow_networks: tuple[Network, ...] = ()
    jpeg_quality: int = 50
    fetch_concurrency: int = 256  # downloads in flight at most; fewer when bytes run out
    fetch_per_host: int = 8  # connections to one image host at most
    fetch_bytes: int = 64 * MIB  # image bodies held at once, downloading or compressing
    cpu_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    job_workers: int = 4
    max_upload_bytes: int = 50 * MIB
    max_rows: int = 100_000
    max_urls_per_row: int = 100
    max_field_bytes: int = 1 * MIB
    max_image_bytes: int = 20 * MIB
    max_image_pixels: int = 50_000_000
    max_redirects: int = 5
    fetch_timeout: float = 30.0
    fetch_retries: int = 2
    retention_days: int = 0
    webhook_secret: str | None = None  # `whsec_…`, several separated by spaces; None: generated
    webhook_retry_schedule: tuple[float, ...] = WEBHOOK_RETRY_SCHEDULE
    webhook_timeout: float = 15.0  # seconds for one attempt, answer included
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # repr=False: never logged
    shutdown_grace: float = 10.0  # seconds images in flight get to finish on SIGTERM
    lease_seconds: float = 30.0  # claimed work stays with a process that stops renewing it
    storage_url: str | None = None  # `s3://bucket/prefix`; None: the data folder
    s3_endpoint: str | None = None  # None: the provider's (AWS); set, the bucket is in the path
    # `postgresql://…`: the database many processes share; None: SQLite in the data folder.
    # repr=False: the URL may hold a password.
    database_url: str | None = field(default=None, repr=False)
    # Wake up at once when another process adds work (LISTEN); off behind PgBouncer in
    # transaction mode, which cannot hold a LISTEN: then the engine polls every second.
    database_listen: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `IMGSVC_*` variables; keyword overrides (CLI flags) win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"IMGSVC_{f.name.upper()}", "").strip()
            if raw:
                values[f.name] = _parse(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse values that would make the service misbehave instead of failing later."""
        if not 1 <= self.jpeg_quality <= 95:
            raise SettingsError("IMGSVC_JPEG_QUALITY must be between 1 and 95")
        for name in (
            "fetch_concurrency",
            "fetch_per_host",
            "cpu_workers",
            "job_workers",
            "max_upload_bytes",
            "max_rows",
            "max_urls_per_row",
            "max_image_bytes",
            "max_image_pixels",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"IMGSVC_{name.upper()} must be at least 1")
        if self.fetch_bytes < self.max_image_bytes:
            raise SettingsError(
                "IMGSVC_FETCH_BYTES must be at least IMGSVC_MAX_IMAGE_BYTES "
                "(room for one image of the largest size)"
            )
        if self.fetch_timeout <= 0:
            raise SettingsError("IMGSVC_FETCH_TIMEOUT must be positive")
        if self.lease_seconds < 2:  # leases are renewed twice a second
            raise SettingsError("IMGSVC_LEASE_SECONDS must be at least 2")
        if self.retention_days < 0 or self.shutdown_grace < 0:
            raise SettingsError(
                "IMGSVC_RETENTION_DAYS and IMGSVC_SHUTDOWN_GRACE cannot be negative"
            )
        self._validate_webhooks()
        _validate_api_keys(self.api_keys)
        _validate_storage(self.storage_url, self.s3_endpoint)
        if self.database_url is not None and not self.database_url.startswith(DATABASE_SCHEMES):
            # The URL itself is never quoted: it may hold a password.
            raise SettingsError("IMGSVC_DATABASE_URL must start with postgresql://")

    def _validate_webhooks(self) -> None:
        if self.webhook_timeout <= 0:
            raise SettingsError("IMGSVC_WEBHOOK_TIMEOUT must be positive")
        if any(delay < 0 for delay in self.webhook_retry_schedule):
            raise SettingsError("IMGSVC_WEBHOOK_RETRY_SCHEDULE must not hold negative delays")
        for secret in self.webhook_secrets:
            try:
                secret_key(secret)
            except ValueError as exc:
                raise SettingsError(f"IMGSVC_WEBHOOK_SECRET: {exc}") from None

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """The configured secrets, each of which signs every webhook (empty: generate one)."""
        return tuple((self.webhook_secret or "").split())

    def with_(self, **changes: Any) -> Settings:
        """A copy with some values changed (used by tests and the CLI)."""
        return replace(self, **changes)

    @property
    def address_policy(self) -> AddressPolicy:
        # Imported here: netguard loads aiohttp, which the CLI's client commands (they read
        # no settings) would otherwise wait for at every start.
        from .pipeline.netguard import AddressPolicy

        return AddressPolicy(self.allow_private_urls, self.allow_networks)

    @property
    def csv_limits(self) -> CsvLimits:
        return CsvLimits(
            max_rows=self.max_rows,
            max_urls_per_row=self.max_urls_per_row,
            max_field_bytes=self.max_field_bytes,
        )


def _parse(name: str, raw: str) -> Any:
    kind = Settings.__dataclass_fields__[name].type
    try:
        if kind == "bool":
            return _parse_bool(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if name == "allow_networks":
            return tuple(ipaddress.ip_network(p.strip()) for p in raw.split(",") if p.strip())
        if name == "api_keys":
            return tuple(k.strip() for k in raw.split(",") if k.strip())
        if name == "public_url":
            return raw.rstrip("/")
        if name == "webhook_retry_schedule":
            return tuple(float(p) for p in raw.split(",") if p.strip())
    except ValueError as exc:
        raise SettingsError(f"IMGSVC_{name.upper()}={raw!r} is not valid: {exc}") from None
    return raw


def _validate_api_keys(keys: tuple[str, ...]) -> None:
    # The message counts keys and never quotes one: it may end up in a log.
    for number, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
            raise SettingsError(
                f"IMGSVC_API_KEYS: key {number} must be at least {MIN_KEY_LENGTH} printable "
                "ASCII characters without spaces or commas (e.g. from `openssl rand -hex 32`)"
            )


def _validate_storage(url: str | None, endpoint: str | None) -> None:
    if url is not None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        segments = prefix.strip("/").split("/") if prefix.strip("/") else []
        if (
            not url.startswith("s3://")
            or not BUCKET.fullmatch(bucket)
            or any(s in ("", ".", "..") or not s.isprintable() for s in segments)
        ):
            raise SettingsError(
                f"IMGSVC_STORAGE_URL={url!r} is not valid: expected s3://bucket or "
                "s3://bucket/prefix (a bucket name of 3 to 63 lowercase letters, digits, "
                "dots and hyphens)"
            )
    if endpoint is not None:
        if url is None:
            raise SettingsError("IMGSVC_S3_ENDPOINT is set but IMGSVC_STORAGE_URL is not")
        scheme, _, rest = endpoint.partition("://")
        if scheme not in ("http", "https") or not rest or "@" in rest:
            # No user:password@ either: the endpoint is shown in error messages.
            raise SettingsError(
                "IMGSVC_S3_ENDPOINT must be an http:// or https:// URL without credentials, "
                "e.g. http://127.0.0.1:9000"
            )


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")
