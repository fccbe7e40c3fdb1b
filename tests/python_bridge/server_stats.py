"""Reading a running server's fill guard through its ``stats`` reply (docs/protocol.md), as a
client would: the newest build's status, and a wait until it reaches a given state."""

from __future__ import annotations

import time

from python_bridge.client import Client


def guard_status(client: Client) -> dict:
    """The newest build's ``fill_guard`` status in the ``stats`` reply."""
    return client.stats()["builds"][-1]["fill_guard"]


def wait_for_guard(client: Client, states: tuple[str, ...], timeout_s: float = 10.0) -> dict:
    """Poll ``stats`` until the newest build's fill guard is in one of ``states``; its status then
    (in another state if ``timeout_s`` ran out first)."""
    deadline = time.monotonic() + timeout_s
    while (status := guard_status(client))["state"] not in states and time.monotonic() < deadline:
        time.sleep(0.01)
    return status
