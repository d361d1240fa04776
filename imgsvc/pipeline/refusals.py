"""Images that fail before any download: a URL that cannot be fetched, or whose host is an
address literal the policy refuses, with the same code and message the download gives.

A job of such URLs would otherwise go through the whole download path once per URL. Only
what needs no connection and no DNS is decided here: a host name is resolved where the
socket is made, at each download (a name's addresses may change between two looks), and
the connector checks the address it connects to whatever was decided here.
"""

from __future__ import annotations

import ipaddress
import re

from .fetch import FetchError, _check_url, _parse_url
from .netguard import AddressPolicy, BlockedAddressError

# A URL's scheme and authority as written: only they decide whether it is refused.
_ORIGIN = re.compile(r"[^:/?#]*://[^/?#]*")


class Refusals:
    """Decides which URLs fail without a download, judging each scheme and host once."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._verdicts: dict[str, FetchError | None] = {}

    def refusal(self, url: str) -> FetchError | None:
        """Why `url` fails before any download, or None when it is to be downloaded."""
        # Parsing each URL was most of the cost of failing one: URLs that begin with the
        # same text up to their path share one verdict (a URL to download is parsed again
        # and checked in full by the download itself).
        origin = _ORIGIN.match(url)
        where = url if origin is None else origin.group()
        if where not in self._verdicts:
            self._verdicts[where] = self._judge(url)
        return self._verdicts[where]

    def _judge(self, text: str) -> FetchError | None:
        try:
            url = _parse_url(text)
            _check_url(url)
        except FetchError as exc:
            return exc
        host = url.host
        try:
            ipaddress.ip_address(host or "")
        except ValueError:
            return None  # a name: resolved and checked at connect time
        try:
            self._policy.check(host or "")  # as the connector's socket factory does
        except BlockedAddressError as exc:
            return FetchError("blocked_address", str(exc))
        return None
