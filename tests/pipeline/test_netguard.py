"""The address policy as a table: no connection is made to decide any of these."""

from __future__ import annotations

import ipaddress

import pytest

from imgsvc.pipeline.netguard import (
    AddressPolicy,
    BlockedAddressError,
    numeric_ipv4,
    refuse_numeric_spelling,
)

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("0.0.0.0", "unspecified"),
    ("198.18.0.1", "private"),
    ("192.0.2.1", "private"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback (embedded in IPv6)"),
    ("::ffff:10.0.0.1", "private (embedded in IPv6)"),
    ("::ffff:169.254.169.254", "link-local (embedded in IPv6)"),
    ("2002:7f00:1::", "loopback (embedded in IPv6)"),
    ("2002:a9fe:a9fe::1", "link-local (embedded in IPv6)"),
    ("64:ff9b::127.0.0.1", "loopback (embedded in IPv6)"),
    ("64:ff9b::10.0.0.1", "private (embedded in IPv6)"),
    ("64:ff9b:1::a00:1", "private (embedded in IPv6)"),
    ("::127.0.0.1", "loopback (embedded in IPv6)"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:db8::1", "private"),
]

ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8",
           "2002:808:808::1", "64:ff9b::8.8.8.8"]  # fmt: skip


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_addresses(address: str, reason: str) -> None:
    with pytest.raises(BlockedAddressError) as caught:
        AddressPolicy().check(address)
    assert caught.value.reason == reason
    assert address in str(caught.value)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    AddressPolicy().check(address)


@pytest.mark.parametrize(("address", "_reason"), REFUSED)
def test_allow_private_lifts_everything(address: str, _reason: str) -> None:
    AddressPolicy(allow_private=True).check(address)


def test_allowed_networks_open_only_themselves() -> None:
    policy = AddressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.2/32"),
                                           ipaddress.ip_network("10.20.0.0/16")))  # fmt: skip
    policy.check("127.0.0.2")
    policy.check("10.20.3.4")
    for refused in ("127.0.0.1", "10.21.0.1", "169.254.169.254"):
        assert not policy.allows(refused)


def test_malformed_addresses_are_refused() -> None:
    assert not AddressPolicy().allows("not-an-ip")
    assert not AddressPolicy(allow_private=True).allows("999.1.1.1")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.000.000.001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("134744072", "8.8.8.8"),
    ],
)
def test_numeric_spellings_are_read_as_browsers_read_them(host: str, address: str) -> None:
    assert str(numeric_ipv4(host)) == address
    with pytest.raises(BlockedAddressError) as caught:
        refuse_numeric_spelling(host)
    assert f"the IPv4 address {address} written in a non-standard numeric form" in str(caught.value)


@pytest.mark.parametrize(
    "host", ["example.com", "127.0.0.1", "127.0.0.1.", "8.8.8.8", "08.0.0.1", "256.0.0.1",
             "1.2.3.4.5", "4294967296", "1_0.0.0.1", "+1.0.0.1", "0x7g.0.0.1", "", "1..1"],
)  # fmt: skip
def test_names_dotted_quads_and_non_addresses_pass_the_spelling_check(host: str) -> None:
    refuse_numeric_spelling(host)
