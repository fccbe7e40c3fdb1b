"""Connecting to Ray, for the commands that scale out over it (``worldfm render-paths --ray``,
``worldfm datagen unrealcv --ray``).

Ray is an optional extra (``pip install -e '.[ray]'``): nothing imports it at module level, and
:func:`connect` says how to install it when it is missing. The module lives in ``datagen``
because both ``datagen`` and ``python_bridge`` use it and ``datagen`` is the one both may
import (docs/architecture.md).

Addresses (``--ray``):

* ``auto``: Ray's own look-up -- ``RAY_ADDRESS``, else a cluster started with ``ray start`` on
  this machine -- and, when there is none, a new single-machine instance (a laptop, one
  multi-GPU box), which stops with the command. Its dashboard, when Ray has one, listens on
  127.0.0.1 only; its other services listen on the machine's address (Ray resolves even a
  127.0.0.1 node address to it) and, in recent Ray versions, require the token Ray writes to
  ``~/.ray/auth_token``.
* ``local``: always that new single-machine instance, ignoring running clusters.
* anything else: the address of a running cluster's head, ``HOST:6379`` or ``ray://HOST:10001``.

A process that is already connected (a test's cluster, a notebook's) keeps its connection:
``connect`` neither re-initialises nor shuts it down.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

INSTALL_HINT = "install the Ray extra: pip install -e '.[ray]' (or pip install ray)"
# The local instance's shared-memory object store. Jobs pass small messages (job specs, progress),
# never frames, so Ray's default (30 % of memory) would only reserve /dev/shm for nothing.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster at the given address cannot be reached."""


@dataclass(frozen=True)
class Cluster:
    """The cluster this driver is connected to: its ``address``, ``dashboard`` URL ("" when the
    cluster runs none), whether this process ``started`` it, and its ``resources`` then."""

    address: str
    dashboard: str
    started: bool
    resources: dict[str, float]

    def describe(self) -> str:
        nodes = int(sum(1 for k in self.resources if k.startswith("node:") and not k.startswith("node:__")))
        what = "started a local Ray instance" if self.started else "connected to Ray"
        cpus, gpus = self.resources.get("CPU", 0), self.resources.get("GPU", 0)
        dash = (f"dashboard {self.dashboard}" if self.dashboard
                else "no dashboard (it comes with pip install 'ray[default]')")
        return f"{what} at {self.address}: {nodes} node(s), {cpus:g} CPUs, {gpus:g} GPUs; {dash}"


def import_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"--ray needs Ray, which is not installed ({exc}); {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def connect(address: str, num_cpus: int | None = None) -> Iterator[Cluster]:
    """Connect this process to Ray at ``address`` (module docstring) for the ``with`` block.

    ``num_cpus`` caps a local instance started here (default: every core). A connection this
    call made is closed at the end of the block (and a local instance it started stops).
    """
    ray = import_ray()
    started = owned = False
    if not ray.is_initialized():
        owned = True
        local = dict(num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, dashboard_host="127.0.0.1")
        try:
            if address == "local":
                started = True
                context = ray.init(address="local", **local)
            elif address == "auto":
                try:
                    context = ray.init(address="auto")
                except ConnectionError:
                    started = True
                    context = ray.init(**local)
            else:
                context = ray.init(address=address)
        except ConnectionError as exc:
            raise RayUnavailableError(
                f"cannot reach a Ray cluster at {address!r} ({exc}); start one with `ray start --head` "
                "(docs/scaling.md), or use --ray auto for one on this machine") from None
        dashboard = context.dashboard_url or ""
    else:
        dashboard = _dashboard_of_running(ray)
    cluster = Cluster(ray.get_runtime_context().gcs_address,
                      f"http://{dashboard}" if dashboard and "://" not in dashboard else dashboard,
                      started, dict(ray.cluster_resources()))
    try:
        yield cluster
    finally:
        if owned:
            ray.shutdown()


def _dashboard_of_running(ray: Any) -> str:
    """The dashboard URL of the cluster this process was already connected to ("" if none)."""
    try:
        return ray._private.worker.get_dashboard_url() or ""
    except Exception:  # noqa: BLE001 -- a private helper that may move between Ray versions; the URL is cosmetic
        return ""


class ProgressChannel:
    """Progress from actors to the driver through a ``ray.util.queue.Queue`` (a Ray actor itself,
    placed with 0 CPUs so it never takes a worker's slot).

    Actors call :meth:`reporter`'s result with any picklable item; they send at most one item
    per ``interval_s`` per key, plus every ``final`` one, so progress costs a frame no round
    trip. The driver calls :meth:`drain` with its callback, e.g. between ``ray.wait`` calls.
    """

    def __init__(self) -> None:
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})

    def drain(self, handle: Callable[[Any], None]) -> None:
        size = self.queue.qsize()
        if size:
            for item in self.queue.get_nowait_batch(size):
                handle(item)

    def close(self) -> None:
        self.queue.shutdown()


def throttled(queue: Any, interval_s: float = 0.25) -> Callable[[Any, bool], None]:
    """``send(item, final)`` for an actor: puts ``item`` on ``queue`` when ``final`` or when
    ``interval_s`` passed since the last put (items are cumulative, so skipped ones lose nothing)."""
    last = [0.0]

    def send(item: Any, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - last[0] >= interval_s:
            last[0] = now
            queue.put_nowait(item)

    return send
