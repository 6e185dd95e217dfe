"""The error of a set-up step and the way set-up steps report what they did."""

from __future__ import annotations


class SetupError(RuntimeError):
    """A set-up step that cannot work on this machine; the message says what to do."""


def echo(message: str) -> None:
    """Print one line of set-up progress."""
    print(f"[aiida-xesml setup] {message}", flush=True)
