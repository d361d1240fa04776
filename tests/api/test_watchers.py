"""Watching jobs for many streams: the check a stream opens with, when the database fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from imgsvc.api.watchers import JobWatchers
from imgsvc.db import open_database

from ..conftest import settings_for

pytestmark = pytest.mark.anyio


async def test_a_stream_opening_while_the_database_fails_gets_its_error_at_once(
    tmp_path: Path,
) -> None:
    db = await open_database(settings_for(tmp_path))
    watchers = JobWatchers(db)
    await db.close()
    try:
        async with asyncio.timeout(5):  # not held until the database answers again
            with pytest.raises(Exception):  # noqa: B017, PT011 (the backend's own error)
                await watchers.latest("a-job")
    finally:
        await watchers.close()
