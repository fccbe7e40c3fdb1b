"""Per-scene server state: the views a client uploaded, the built anchor, cached reference latents.

A scene goes through two states: *pending* (views arriving through ``open_scene`` and
``add_views``) and *built* (``models.anchor`` has fused the cloud and chosen reference
candidates; renders may start). Scene ids are random tokens, so a client that reconnects
with the same session keeps its scenes and no client can guess another's.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from models.scene import Frame
from python_bridge.protocol import E_LIMIT, E_UNKNOWN_SCENE, ProtocolError

# When a server measures each scene's fill guard (ServerConfig.fill_guard, `--fill-guard`).
FILL_GUARD_WHEN = ("idle", "build", "off")


@dataclass
class BuiltScene:
    """What the pipeline renders from: ``anchor`` (models.anchor AnchorScene), the render-ready
    ``cloud`` (a ``models.anchor.styles.PreparedAnchor``), the reference ``candidates`` (Frames),
    how long the build took and its ``stages`` (name -> ms)."""

    anchor: Any
    cloud: Any
    candidates: list[Frame]
    points: int
    build_ms: float
    stages: dict[str, float] = field(default_factory=dict)
    # models.fill_guard.FillGuard once measured (FramePipeline.measure_fill_guard); None: not
    # measured, or too few views to measure (the model serves)
    fill_guard: Any = None
    _latents: dict[int, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reference_latent(self, index: int, encode: Callable[[], Any]) -> tuple[Any, bool]:
        """The cached latent of candidate ``index``, encoding it on first use; returns (latent, was_cached).

        Encoding happens outside the lock so two workers never serialise on it (the
        rare double encode of the same candidate is harmless).
        """
        with self._lock:
            if index in self._latents:
                return self._latents[index], True
        latent = encode()
        with self._lock:
            return self._latents.setdefault(index, latent), False


@dataclass
class SceneState:
    """One scene of one client session: pending ``views`` until ``built`` is set."""

    id: str
    owner: str
    name: str
    views: list[Frame] = field(default_factory=list)
    built: BuiltScene | None = None
    building: bool = False


class SceneStore:
    """Thread-safe registry of scenes, with the per-session scene limit."""

    def __init__(self, max_per_owner: int) -> None:
        self._max = max_per_owner
        self._scenes: dict[str, SceneState] = {}
        self._lock = threading.Lock()

    def create(self, owner: str, name: str, request_id: int | None) -> SceneState:
        with self._lock:
            owned = sum(1 for s in self._scenes.values() if s.owner == owner)
            if owned >= self._max:
                raise ProtocolError(
                    E_LIMIT,
                    f"this session already has {owned} scenes open (limit {self._max}); close one first",
                    request_id,
                )
            scene = SceneState(id="s-" + secrets.token_hex(8), owner=owner, name=name)
            self._scenes[scene.id] = scene
            return scene

    def get(self, scene_id: str, request_id: int | None) -> SceneState:
        with self._lock:
            scene = self._scenes.get(scene_id)
        if scene is None:
            raise ProtocolError(
                E_UNKNOWN_SCENE, f"no scene {scene_id!r} on this server (closed, expired, or never opened)", request_id
            )
        return scene

    def close(self, scene_id: str, request_id: int | None) -> SceneState:
        with self._lock:
            scene = self._scenes.pop(scene_id, None)
        if scene is None:
            raise ProtocolError(E_UNKNOWN_SCENE, f"no scene {scene_id!r} to close", request_id)
        return scene

    def holds(self, scene: SceneState) -> bool:
        """Whether ``scene`` is still registered (not closed, not dropped with its session)."""
        with self._lock:
            return self._scenes.get(scene.id) is scene

    def building_owners(self) -> set[str]:
        """Sessions with a scene whose build is running or queued."""
        with self._lock:
            return {s.owner for s in self._scenes.values() if s.building}

    def drop_owner(self, owner: str) -> list[str]:
        """Forget every scene of ``owner`` (an expired session); returns their ids."""
        with self._lock:
            gone = [sid for sid, s in self._scenes.items() if s.owner == owner]
            for sid in gone:
                del self._scenes[sid]
        return gone

    def __len__(self) -> int:
        with self._lock:
            return len(self._scenes)
