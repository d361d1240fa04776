"""The quicker GIL handover lasts exactly as long as the uploads that asked for it."""

from __future__ import annotations

import sys

import pytest

from imgsvc import gil


def test_the_interval_is_quick_while_any_upload_runs_and_usual_after() -> None:
    usual = sys.getswitchinterval()
    assert usual > gil.BUSY_SWITCH_INTERVAL
    first, second = gil.quick_handover(), gil.quick_handover()
    with first:
        assert sys.getswitchinterval() == gil.BUSY_SWITCH_INTERVAL
        second.__enter__()  # a second upload starts, then the first one ends
    assert sys.getswitchinterval() == gil.BUSY_SWITCH_INTERVAL
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == usual


def test_a_failed_upload_restores_the_usual_interval() -> None:
    usual = sys.getswitchinterval()
    inside: list[float] = []

    def failing_upload() -> None:
        with gil.quick_handover():
            inside.append(sys.getswitchinterval())
            raise ValueError("the CSV was invalid")

    with pytest.raises(ValueError, match="invalid"):
        failing_upload()
    assert inside == [gil.BUSY_SWITCH_INTERVAL]
    assert sys.getswitchinterval() == usual
