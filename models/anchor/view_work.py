"""Per-view work kept across many scene builds from subsets of the same views.

Why: the fill guard (:mod:`models.fill_guard`) and `worldfm eval` build a scene's anchor once
per window of views left out -- 21 builds of 20 views each from a 24-view scene. A view's
reliable points (:func:`models.anchor.cloud.frame_points`) and its ``mesh`` source tables
(packed depth and colour, colour pyramid) depend on that view alone, yet each build computed
them again. Inside :func:`reuse_view_work` they are computed once per view: the guard of a
24-view 256 px street scene took 6.9 s instead of 10.4 s (cProfile, 2-core VM, 2026-12-04;
`python bench/bench_fill_guard.py` times it). Outside it nothing is kept, so a server's scenes
hold no extra memory.

The cache is keyed by the view object itself (held, so its ``id`` cannot be reused while the
cache lives) and by a caller-chosen key naming the work and its parameters. The kept values
are the very results of the first computation, so every build gets the bytes it would have
computed itself (tests compare builds with and without the cache).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

__all__ = ["per_view", "reuse_view_work"]

T = TypeVar("T")

_CACHE: ContextVar[dict[tuple[int, Hashable], tuple[Any, Any]] | None] = ContextVar("worldfm_view_work", default=None)


@contextlib.contextmanager
def reuse_view_work() -> Iterator[None]:
    """Inside, :func:`per_view` computes each (view, key) once; nested uses share the outer cache."""
    if _CACHE.get() is not None:
        yield
        return
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def per_view(view: object, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()`` for ``view``, or its kept result inside :func:`reuse_view_work`.

    ``key`` names the work and every parameter it depends on besides the view (e.g.
    ``("points", max_depth, max_slope)``). Results are shared, not copied: callers must not
    modify them in place.
    """
    cache = _CACHE.get()
    if cache is None:
        return compute()
    entry = cache.get((id(view), key))
    if entry is None or entry[0] is not view:
        entry = (view, compute())
        cache[(id(view), key)] = entry
    return entry[1]
