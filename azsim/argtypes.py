"""argparse value types shared by every floor's command modules."""
from __future__ import annotations

import argparse


def positive_int(name: str):
    """An argparse `type=` that accepts integers >= 1 and names the flag otherwise."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {value!r}")
        return n
    return parse
