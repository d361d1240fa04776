"""SSRF through the running service: refused addresses never get a connection.

The service runs with IMGSVC_ALLOW_NETWORKS=127.0.0.2/32 (an image host listens there);
every other private address stays refused. A listener on 127.0.0.1 and ::1 counts the
connections it receives: each test proves zero, not only the error code.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from imgsvc.pipeline import netguard

from ..conftest import jpeg_bytes, running_service
from ..security_support import (
    Listener,
    allowed_image_host,
    guarded_settings,
    image_outcomes,
    one_per_row,
    refused_listener,
)

pytestmark = pytest.mark.anyio

# Every spelling points at the listener's port ({p}) where a port is possible.
REFUSED_URLS = [
    "http://127.0.0.1:{p}/ipv4-loopback.jpg",
    "http://127.8.9.10:{p}/ipv4-loopback-range.jpg",
    "http://10.0.0.1:{p}/private-10.jpg",
    "http://172.16.5.4:{p}/private-172.jpg",
    "http://192.168.1.1:{p}/private-192.jpg",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://100.64.0.1:{p}/cgnat.jpg",
    "http://224.0.0.1:{p}/multicast.jpg",
    "http://240.0.0.1:{p}/reserved.jpg",
    "http://255.255.255.255:{p}/broadcast.jpg",
    "http://0.0.0.0:{p}/unspecified.jpg",  # Linux connects 0.0.0.0 to this host
    "http://[::1]:{p}/ipv6-loopback.jpg",
    "http://[::]:{p}/ipv6-unspecified.jpg",
    "http://[fc00::1]:{p}/ula-fc.jpg",
    "http://[fd12:3456::1]:{p}/ula-fd.jpg",
    "http://[fe80::1]:{p}/ipv6-link-local.jpg",
    "http://[::ffff:127.0.0.1]:{p}/mapped.jpg",
    "http://[::ffff:7f00:1]:{p}/mapped-hex.jpg",
    "http://[::ffff:169.254.169.254]/mapped-metadata.jpg",
    "http://[2002:7f00:1::]:{p}/6to4.jpg",
    "http://[64:ff9b::127.0.0.1]:{p}/nat64.jpg",
    "http://[64:ff9b::a00:1]:{p}/nat64-private.jpg",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:{p}/teredo.jpg",
    "http://2130706433:{p}/decimal.jpg",
    "http://0177.0.0.1:{p}/octal.jpg",
    "http://0x7f000001:{p}/hex.jpg",
    "http://0x7f.0.0.1:{p}/hex-part.jpg",
    "http://127.1:{p}/short.jpg",
    "http://017700000001:{p}/octal-whole.jpg",
    "http://a@127.0.0.1:{p}/userinfo.jpg",
    "http://example.com@127.0.0.1:{p}/userinfo-host.jpg",
    "http://user:pass@[::1]:{p}/userinfo-v6.jpg",
    "http://localhost:{p}/name-for-loopback.jpg",
    "https://127.0.0.1:{p}/https.jpg",
]


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with refused_listener() as running:
        yield running


async def test_refused_addresses_fail_as_blocked_without_a_connection(
    tmp_path: Path, listener: Listener
) -> None:
    urls = [u.format(p=listener.port) for u in REFUSED_URLS]
    async with running_service(guarded_settings(tmp_path)) as service:
        status, answer = await service.upload(one_per_row(urls))
        assert status == 202  # refused addresses are accepted, and fail as their image
        outcomes = await image_outcomes(service, answer["request_id"])
    for url in urls:
        assert outcomes[url]["status"] == "failed", url
        assert outcomes[url]["error"]["code"] == "blocked_address", (url, outcomes[url])
        assert "does not connect to" in outcomes[url]["error"]["message"]
    assert listener.connections == 0


async def test_numeric_spellings_name_the_address_they_spell(
    tmp_path: Path, listener: Listener
) -> None:
    spellings = ["2130706433", "0177.0.0.1", "0x7f000001", "127.1", "0x7f.0.0.1"]
    urls = [f"http://{host}:{listener.port}/x.jpg" for host in spellings]
    async with running_service(guarded_settings(tmp_path)) as service:
        _, answer = await service.upload(one_per_row(urls))
        outcomes = await image_outcomes(service, answer["request_id"])
    for host, url in zip(spellings, urls, strict=True):
        message = outcomes[url]["error"]["message"]
        assert message.startswith(f"{host} is the IPv4 address 127.0.0.1 written in a "
                                  "non-standard numeric form"), message  # fmt: skip


async def test_a_redirect_from_an_allowed_host_to_a_refused_one_is_blocked(
    tmp_path: Path, listener: Listener
) -> None:
    targets = {
        "/to-loopback": f"http://127.0.0.1:{listener.port}/secret",
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        "/to-decimal": f"http://2130706433:{listener.port}/secret",
        "/to-v6": f"http://[::1]:{listener.port}/secret",
        "/to-name": f"http://localhost:{listener.port}/secret",
    }

    def redirect(target: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            raise web.HTTPFound(target)

        return handler

    async with allowed_image_host() as host:
        urls = [host.route(path, redirect(target)) for path, target in targets.items()]
        async with running_service(guarded_settings(tmp_path)) as service:
            _, answer = await service.upload(one_per_row(urls))
            outcomes = await image_outcomes(service, answer["request_id"])
        assert all(host.hits[path] == 1 for path in targets)  # the first hop was allowed
    assert {outcomes[u]["error"]["code"] for u in urls} == {"blocked_address"}
    assert listener.connections == 0


class ScriptedDns(AbstractResolver):
    """Stands in for the system resolver: each name answers from a script, in turn."""

    def __init__(self, script: dict[str, list[list[str]]]) -> None:
        self.script = script
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        answers = self.script.get(host)
        if not answers:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> ScriptedDns:
    scripted = ScriptedDns({})
    monkeypatch.setattr(netguard, "DefaultResolver", lambda: scripted)
    return scripted


async def test_names_resolving_to_refused_addresses_are_caught_at_connect_time(
    tmp_path: Path, listener: Listener, dns: ScriptedDns
) -> None:
    async with allowed_image_host() as host:
        host.add("/a.jpg", jpeg_bytes(40, 30))
        port = host.server.port
        dns.script.update(
            {
                "internal.example": [["127.0.0.1"]],
                "metadata.example": [["169.254.169.254"]],
                "both.example": [["127.0.0.1", "127.0.0.2"]],
                # DNS rebinding: public-looking at first, then an internal address.
                "rebind.example": [["127.0.0.2"], ["127.0.0.1"]],
            }
        )
        internal = f"http://internal.example:{listener.port}/a.jpg"
        metadata = "http://metadata.example/latest/meta-data/"
        both = f"http://both.example:{port}/a.jpg"
        first, second = (f"http://rebind.example:{p}/a.jpg" for p in (port, listener.port))
        async with running_service(guarded_settings(tmp_path)) as service:
            _, answer = await service.upload(one_per_row([internal, metadata, both, first]))
            outcomes = await image_outcomes(service, answer["request_id"])
            _, answer = await service.upload(one_per_row([second]))
            outcomes |= await image_outcomes(service, answer["request_id"])
    assert outcomes[internal]["error"]["code"] == "blocked_address"
    assert outcomes[metadata]["error"]["code"] == "blocked_address"
    assert outcomes[both]["status"] == "succeeded"  # only the allowed address was used
    assert outcomes[first]["status"] == "succeeded"
    assert outcomes[second]["error"]["code"] == "blocked_address"
    assert "127.0.0.1 is a loopback address" in outcomes[second]["error"]["message"]
    assert dns.asked.count("rebind.example") == 2
    assert listener.connections == 0


# Its image fails at once as blocked_address: these tests never leave the machine.
NO_NETWORK_CSV = "S. No.,Product Name,Input Image Urls\n1,A,http://127.0.0.1:9/a.jpg\n"


@pytest.mark.parametrize(
    "webhook",
    [
        "http://169.254.169.254/hook",
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fd00::5]/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://user@127.0.0.1/hook",
    ],
)
async def test_webhook_urls_with_refused_literals_are_400(tmp_path: Path, webhook: str) -> None:
    async with running_service(guarded_settings(tmp_path)) as service:
        status, body = await service.upload(NO_NETWORK_CSV, webhook_url=webhook)
        _, jobs = await service.get("/api/jobs")
    assert status == 400
    assert body["code"] == "blocked_address"
    assert body["detail"].startswith("webhook_url: ")
    assert jobs["total"] == 0  # nothing was queued


async def test_webhook_urls_allowed_or_named_are_accepted(tmp_path: Path, dns: ScriptedDns) -> None:
    # A host name is accepted: its address is checked at each delivery (the scripted DNS
    # keeps any delivery attempt on this machine).
    async with running_service(guarded_settings(tmp_path)) as service:
        for webhook in ("http://127.0.0.2:9/hook", "https://hooks.example/imgsvc"):
            status, body = await service.upload(NO_NETWORK_CSV, webhook_url=webhook)
            assert status == 202, body
            assert body["webhook_url"] == webhook
