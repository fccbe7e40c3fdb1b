"""``worldfm datagen unrealcv``: capture scenes from running Unreal games (see docs/datagen.md)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``unrealcv`` source under ``worldfm datagen``."""
    p = subparsers.add_parser(
        "unrealcv",
        help="capture multi-view scenes from running Unreal games through the UnrealCV plugin",
        description="Capture posed RGB-D views from Unreal games running the UnrealCV plugin into "
        "scene folders (one per game) in the project's dataset format. Flags override the TOML plan; "
        "rerunning the same command resumes an interrupted capture.",
    )
    p.add_argument("--plan", metavar="TOML", help="configuration: [connection], [capture], [plan] (docs/datagen.md)")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset root; game i writes DIR/unrealcv_<port>")
    g = p.add_argument_group("games")
    g.add_argument("--host", help="host of the games (default 127.0.0.1)")
    g.add_argument("--port", type=int, action="append", dest="ports", metavar="PORT",
                   help="UnrealCV port of a game; repeat for several games (default 9000)")
    g.add_argument("--unix-socket", action="append", dest="unix_sockets", metavar="PATH",
                   help="unix socket of a game instead of a port (repeatable); --port already uses "
                   "/tmp/unrealcv_<port>.socket when the game has one")
    g.add_argument("--game", action="append", dest="games", metavar="HOST:PORT",
                   help="a game on any machine (repeatable), instead of --host/--port; with --ray its capture "
                   "runs on that machine's Ray node")
    g.add_argument("--timeout", type=float, dest="request_timeout", metavar="S", help="seconds per request (60)")
    g.add_argument("--connect-attempts", type=int, metavar="N", help="connection attempts before giving up (5)")
    c = p.add_argument_group("capture")
    c.add_argument("--camera", type=int, dest="camera_id", metavar="ID", help="UnrealCV camera id (0: the player)")
    c.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="set the capture resolution")
    c.add_argument("--fov", type=float, dest="hfov_deg", metavar="DEG", help="set the horizontal field of view")
    c.add_argument("--depth", dest="depth_mode", choices=("auto", "plane", "distance"),
                   help="what `depth npy` holds (auto: detect from the plugin's commands)")
    c.add_argument("--normals", action="store_true", default=None, help="also capture surface normals")
    c.add_argument("--object-masks", action="store_true", default=None, help="also capture object masks")
    c.add_argument("--min-clearance", type=float, metavar="CM", help="reject views this close to geometry (20)")
    l = p.add_argument_group("plan")
    l.add_argument("--kind", choices=("orbit", "waypoints", "random"), help="plan shape (orbit)")
    l.add_argument("--views", type=int, help="views per scene")
    l.add_argument("--seed", type=int, help="plan seed (game i uses seed + i)")
    l.add_argument("--center", type=float, nargs=3, metavar=("X", "Y", "Z"), help="orbit centre, Unreal cm")
    l.add_argument("--radius", type=float, metavar="CM", help="orbit radius, Unreal cm")
    p.add_argument("--ray", metavar="auto|local|ADDRESS",
                   help="capture with one Ray actor per game, on the node hosting it (pip install -e '.[ray]'; "
                   "docs/scaling.md); auto: RAY_ADDRESS, a cluster started on this machine, else a local instance")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Capture every configured game; 0 when every scene is complete, 1 otherwise."""
    from tqdm import tqdm

    from datagen.ray_cluster import RayUnavailableError
    from datagen.unrealcv.config import ConfigError, load_config
    from datagen.unrealcv.workers import capture_all, endpoints_of

    overrides = {
        "connection": {"host": args.host, "ports": args.ports, "unix_sockets": args.unix_sockets, "games": args.games,
                       "request_timeout": args.request_timeout, "connect_attempts": args.connect_attempts},
        "capture": {"camera_id": args.camera_id, "size": args.size, "hfov_deg": args.hfov_deg,
                    "depth_mode": args.depth_mode, "normals": args.normals, "object_masks": args.object_masks,
                    "min_clearance": args.min_clearance},
        "plan": {"kind": args.kind, "views": args.views, "seed": args.seed, "center": args.center,
                 "radius": args.radius},
    }
    try:
        config = load_config(args.plan, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    games = len(endpoints_of(config))
    bar = tqdm(total=config.plan.views * games, unit="view", disable=args.no_progress, file=sys.stderr)
    lock = threading.Lock()

    def progress(n: int) -> None:
        with lock:
            bar.update(n)

    start = time.perf_counter()
    try:
        if args.ray is None:
            results = capture_all(config, args.out, progress)
        else:
            results = _on_ray(args.ray, config, args.out, progress)
    except KeyboardInterrupt:
        print("interrupted after the views in hand; rerun the same command to resume", file=sys.stderr)
        return 130
    except RayUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    wall = time.perf_counter() - start
    views = sum(r.stats.views for r in results)
    for r in results:
        state = "complete" if r.complete else "INCOMPLETE"
        where = ", ".join(filter(None, (r.stats.transport or r.endpoint.describe(), r.stats.plugin)))
        print(f"{r.scene} [{where}] {state}: {r.stats.summary()}")
        if r.error:
            print(f"  error: {r.error}", file=sys.stderr)
    print(
        f"total: {views} views from {games} game(s) in {wall:.1f} s ({views / wall if wall > 0 else 0:.2f} views/s); "
        f"{sum(r.stats.rejected for r in results)} rejected, {sum(r.stats.retries for r in results)} retries, "
        f"{sum(r.stats.reconnects for r in results)} reconnects, {sum(not r.complete for r in results)} scene(s) incomplete"
    )
    return 0 if all(r.complete for r in results) else 1


def _on_ray(address: str, config, out: str, progress):
    """``capture_on_ray`` on the cluster at ``address`` (its description on stderr)."""
    from datagen.ray_cluster import connect
    from datagen.unrealcv.ray_capture import capture_on_ray

    with connect(address) as cluster:
        print(cluster.describe(), file=sys.stderr, flush=True)
        return capture_on_ray(config, out, progress)
