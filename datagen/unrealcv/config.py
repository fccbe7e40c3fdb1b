"""The capture configuration: a TOML file with ``[connection]``, ``[capture]`` and ``[plan]``.

Every key is optional; command-line flags override the file. Lengths are Unreal
centimetres, points are Unreal ``[X, Y, Z]``, angles degrees. Example (docs/datagen.md has
every key)::

    [connection]
    host = "127.0.0.1"
    ports = [9000, 9001]      # one worker and one scene folder per game

    [capture]
    camera_id = 0
    size = [512, 512]
    normals = true

    [plan]
    kind = "orbit"
    views = 48
    center = [0, 0, 150]
    radius = 600
    heights = [0, 120]
    neighbours = 1            # one small-baseline companion per orbit view
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field

from datagen.unrealcv.capture import CaptureOptions
from datagen.unrealcv.connection import ConnectionSettings
from datagen.unrealcv.planning import Plan


class ConfigError(ValueError):
    """A configuration file or flag that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Targets:
    """Which games to capture from."""

    host: str = "127.0.0.1"
    ports: tuple[int, ...] = (9000,)
    unix_sockets: tuple[str, ...] = ()  # used instead of ports when given
    # "HOST:PORT" of games on several machines, used instead of host and ports when given
    # (`--ray` captures each on its own machine's Ray node, docs/scaling.md).
    games: tuple[str, ...] = ()
    # Where a 1.0.x game on Linux creates unrealcv_<port>.socket; the plugin hard-codes /tmp, so
    # change it only when /tmp is not shared with the game (containers) or for the test stand-in.
    socket_dir: str = "/tmp"


@dataclass(frozen=True)
class CaptureConfig:
    targets: Targets = field(default_factory=Targets)
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    capture: CaptureOptions = field(default_factory=CaptureOptions)
    plan: Plan = field(default_factory=Plan)


def _tuples(value):
    """TOML arrays -> tuples (nested), so the frozen dataclasses hash and compare."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def build(cls, values: dict, section: str):
    """``cls(**values)`` with a clear error for unknown keys and bad values."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"[{section}] has unknown keys {unknown}; allowed: {sorted(names)}")
    try:
        return cls(**{k: _tuples(v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}]: {exc}") from exc


_CONNECTION_KEYS = {f.name for f in dataclasses.fields(ConnectionSettings)}


def load_config(path: str | os.PathLike | None, overrides: dict[str, dict] | None = None) -> CaptureConfig:
    """Read ``path`` (None: defaults only) and apply ``overrides`` (section -> key -> value)."""
    data: dict = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read plan file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"connection", "capture", "plan"})
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown}; allowed: [connection], [capture], [plan]")
    sections = {name: dict(data.get(name, {})) for name in ("connection", "capture", "plan")}
    for name, values in (overrides or {}).items():
        sections[name].update({k: v for k, v in values.items() if v is not None})
    conn = sections["connection"]
    target_keys = ("host", "ports", "unix_sockets", "socket_dir", "games")
    targets = build(Targets, {k: conn.pop(k) for k in target_keys if k in conn}, "connection")
    if not targets.ports and not targets.unix_sockets and not targets.games:
        raise ConfigError("[connection] needs at least one port, unix socket or game")
    for game in targets.games:
        host, _, port = str(game).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"[connection] games: {game!r} is not HOST:PORT (e.g. \"10.0.0.5:9000\")")
    settings = build(ConnectionSettings, {k: conn.pop(k) for k in list(conn) if k in _CONNECTION_KEYS}, "connection")
    if conn:
        raise ConfigError(f"[connection] has unknown keys {sorted(conn)}; allowed: "
                          f"{sorted(_CONNECTION_KEYS | set(target_keys))}")
    return CaptureConfig(
        targets=targets,
        connection=settings,
        capture=build(CaptureOptions, sections["capture"], "capture"),
        plan=build(Plan, sections["plan"], "plan"),
    )
