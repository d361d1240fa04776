"""Wake-up hints between processes: a NOTIFY with each commit that adds claimable work or
makes a webhook delivery due, and a LISTEN on a connection of its own that sets this
process's events.

A hint is never the record: a notification sent while the listener reconnects is lost, and
the engine polls every second all the same. LISTEN holds session state, so it cannot go
through PgBouncer in transaction mode (IMGSVC_DATABASE_LISTEN=0 turns it off there); NOTIFY
is transactional and goes through anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from psycopg import AsyncConnection, Error
from psycopg.rows import TupleRow

log = logging.getLogger(__name__)

WORK = "imgsvc_work"  # the channel of new claimable work
OUTBOX = "imgsvc_outbox"  # the channel of webhook deliveries falling due
RECONNECT_PAUSE = 2.0  # seconds before listening again after the connection was lost


async def announce(db: AsyncConnection[TupleRow], channel: str) -> None:
    """Tell every listening process, once this transaction commits, to look now."""
    await db.execute(f"NOTIFY {channel}")


async def listen(url: str, events: dict[str, asyncio.Event]) -> None:
    """Set the event of each channel notified, until cancelled; reconnects when the
    connection is lost."""
    while True:
        try:
            async with await AsyncConnection.connect(url, autocommit=True) as db:
                for channel in events:
                    await db.execute(f"LISTEN {channel}")
                for event in events.values():  # anything sent while not listening
                    event.set()
                async for notify in db.notifies():
                    events[notify.channel].set()
        except Error as exc:
            log.warning("not listening for other processes' work (%s): polling only", exc)
        await asyncio.sleep(RECONNECT_PAUSE)


async def stop(listener: asyncio.Task[None] | None) -> None:
    """Stop listening."""
    if listener is not None:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
