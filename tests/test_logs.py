"""Logs never carry a whole phone number."""

from __future__ import annotations

from dialer.logs import mask_phone


def test_phone_numbers_are_masked_and_ids_are_not() -> None:
    line = mask_phone("dial +447700900123 and 07700900123 for c1-l2-a3 call 1775719461.306731")
    assert "+447700900123" not in line and "07700900123" not in line
    assert "+447*******23" in line
    assert "c1-l2-a3" in line and "1775719461.306731" in line
