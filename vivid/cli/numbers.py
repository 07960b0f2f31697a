"""argparse types for whole numbers with a lower bound (steps, pixels, frame indices, counts): one implementation, so
every flag words its error the same way ("must be a whole number [of UNIT] >= MIN, got ...")."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(minimum: int, unit: str = "") -> Callable[[str], int]:
    """An argparse type accepting a whole number >= `minimum`; `unit` (e.g. "pixels") is named in its messages."""
    of_unit, in_unit = (f" of {unit}", f" {unit}") if unit else ("", "")

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number{of_unit} >= {minimum}, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{in_unit}, got {number}")
        return number

    parse.__name__ = f"whole_number_{unit or 'count'}_from_{minimum}"  # argparse names a type by it
    return parse


positive_int = whole_number(1)  # steps, candidates
count = whole_number(0)  # frame indices, instances, counts: what each must be is checked with the video
pixels = whole_number(0, "pixels")  # a distance in pixels
