"""What image fetches and webhooks share: reading Retry-After, and the guarded session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web

from imgsvc.pipeline.netguard import AddressPolicy, blocked_cause
from imgsvc.pipeline.outbound import guarded_session, parse_retry_after

from ..conftest import loopback_server


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


@pytest.mark.parametrize(("header", "seconds"), [("0", 0.0), ("120", 120.0), (" 7 ", 7.0)])
def test_delay_seconds_are_read_as_they_are(header: str, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


def test_a_date_in_the_future_is_the_time_until_it() -> None:
    header = http_date(datetime.now(UTC) + timedelta(minutes=2))
    # An HTTP date has whole seconds, so up to one is lost to rounding down.
    assert parse_retry_after(header) == pytest.approx(119.5, abs=1.0)


def test_a_date_in_the_past_means_now() -> None:
    assert parse_retry_after(http_date(datetime.now(UTC) - timedelta(hours=1))) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(
    "header",
    [
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850, obsolete but still to be read
        "Sun Nov  6 08:49:37 1994",  # asctime, which carries no zone
    ],
)
def test_obsolete_date_forms_are_read_too(header: str) -> None:
    assert parse_retry_after(header) == 0.0


def test_a_date_without_a_zone_is_taken_as_gmt() -> None:
    soon = datetime.now(UTC) + timedelta(minutes=2)
    assert parse_retry_after(soon.strftime("%a %b %d %H:%M:%S %Y")) == pytest.approx(119.5, abs=1.0)


@pytest.mark.parametrize(
    "header", [None, "", "soon", "-5", "1.5", "1e3", "\u0663", "Wed, 32 Oct 2015 07:28:00 GMT"]
)
def test_anything_else_is_no_advice(header: str | None) -> None:
    assert parse_retry_after(header) is None


@pytest.mark.anyio
async def test_the_session_refuses_addresses_the_policy_refuses() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="reached")

    async with (
        loopback_server(ok) as server,
        guarded_session(AddressPolicy(), limit=1) as session,
    ):
        with pytest.raises(aiohttp.ClientError) as caught:
            await session.get(server.make_url("/"))
    blocked = blocked_cause(caught.value)
    assert blocked is not None
    assert blocked.reason == "loopback"


@pytest.mark.anyio
async def test_the_session_ignores_proxy_settings_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxied: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        proxied.append(str(request.url))
        return web.Response(text="from the proxy")

    async def direct(request: web.Request) -> web.Response:
        return web.Response(text="direct")

    async with loopback_server(proxy) as proxy_server, loopback_server(direct) as server:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", str(proxy_server.make_url("")))
        async with (
            guarded_session(AddressPolicy(allow_private=True), limit=1) as session,
            session.get(server.make_url("/")) as response,
        ):
            assert await response.text() == "direct"
    assert proxied == []
