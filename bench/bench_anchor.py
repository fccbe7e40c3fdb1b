"""Benchmark of the explicit 3-D anchor (issue 3): scene build, splatting, selection, hole filling.

Run: ``/work/venv/bin/python bench/bench_anchor.py [--threads 2] [--views 100] [--styles-only]``.

Prints medians in milliseconds and same-run ratios. Claims measured:
* render 1 M points into 512x512 (target <= 15 ms on a 2-core CPU) and 256x256, points/s, with
  the eager and the compiled kernel (the server's),
  and the speed-up over a naive per-point NumPy z-buffer and a vectorised NumPy one;
* build a scene from 100 views of 256x256 (target <= 5 s);
* anchor styles side by side (issue 22): per-frame cost of each ``models.anchor.styles`` style at
  256x256 and 512x512 from the same scene and cameras, eager and compiled (the server's, steady
  state), and its ratio to ``points`` (target: mesh <= 1.5x), plus each style's preparation time
  and first frame while its kernels compile; compiled, also each style's frame followed by the
  reference pick, the server's two stages per frame (they share one reference ranking);
* bytes per point held in memory; reference selection per frame (target < 2 ms);
  hole filling; batched vs single-view rendering.
Scenes come from ``datagen.procedural`` (rendering the views takes ~15 s and is not timed).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import time
from collections.abc import Callable

# As `worldfm serve` does: idle OpenMP threads sleep instead of spinning, which on a shared
# 2-core machine is the difference between ~2x and ~5x slow-downs when another process runs.
# Must be set before torch starts its thread pool; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datagen.procedural.renderer import Renderer  # noqa: E402
from machine import machine_line  # noqa: E402
from datagen.procedural.scenes import generate_scene  # noqa: E402
from datagen.procedural.trajectories import plan_cameras  # noqa: E402
from models.anchor import (  # noqa: E402
    PointCloud,
    build_scene,
    fill_holes,
    render_cloud,
    render_views,
    select_reference,
    to_device,
)
from models.anchor.splat import compiled_kernels_settled  # noqa: E402
from models.cameras import K_from_hfov, look_at, project, scale_K  # noqa: E402


def timed_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, fastest) wall time of ``fn`` in milliseconds; on a shared machine the fastest
    run shows what the code does when it gets the cores, the median what a user sees."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times), 1000.0 * min(times)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    return timed_ms(fn, repeats, warmup)[0]


def naive_render(
    xyz: np.ndarray, rgb: np.ndarray, K: np.ndarray, c2w: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Per-point Python loop over a NumPy z-buffer: the obvious implementation."""
    uv, z = project(xyz, K, c2w)
    depth = np.full((height, width), np.inf)
    image = np.zeros((height, width, 3), np.uint8)
    for i in range(len(xyz)):
        col, row = math.floor(uv[i, 0]), math.floor(uv[i, 1])
        if z[i] > 1e-3 and 0 <= col < width and 0 <= row < height and z[i] < depth[row, col]:
            depth[row, col] = z[i]
            image[row, col] = rgb[i]
    return image


def numpy_render(
    xyz: np.ndarray, rgb: np.ndarray, K: np.ndarray, c2w: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Vectorised NumPy z-buffer (sort by depth, first write per pixel wins): a fair CPU baseline."""
    uv, z = project(xyz, K, c2w)
    col, row = np.floor(uv[:, 0]), np.floor(uv[:, 1])
    drawn = (z > 1e-3) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    pix = (row[drawn] * width + col[drawn]).astype(np.int64)
    order = np.argsort(z[drawn], kind="stable")
    pix_sorted = pix[order]
    first = np.unique(pix_sorted, return_index=True)[1]
    image = np.zeros((height * width, 3), np.uint8)
    image[pix_sorted[first]] = rgb[drawn][order[first]]
    return image.reshape(height, width, 3)


class ZBufferCore(torch.nn.Module):
    """The renderer's core (project, pack key, scatter amin) in ONNX-exportable ops.

    ONNX has no float->int bit reinterpretation, so the key quantises depth to 10 um
    instead of using its float32 bits; everything else matches ``render_views``. The projection
    is written out as element-wise products and sums, not one matrix product: ONNX Runtime's
    and torch's matrix products round differently (fused multiply-adds, summation order; ONNX
    Runtime 1.31 and torch 2.13 disagreed on keys), element-wise operations round alike, so
    the two runtimes can be held to the same keys.
    """

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width, self.height = width, height

    def forward(self, xyz_t: torch.Tensor, proj: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        x, y, z = xyz_t[0], xyz_t[1], xyz_t[2]
        hom = [proj[i, 0] * x + proj[i, 1] * y + proj[i, 2] * z + proj[i, 3] for i in range(3)]
        z = hom[2]
        u, v = hom[0] / z, hom[1] / z
        drawn = (z > 1e-3) & (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height)
        pix = torch.where(drawn, torch.floor(v) * self.width + torch.floor(u), float(self.width * self.height))
        key = (z * 1e5).to(torch.int64) * 4294967296 + index
        flat = torch.full((self.width * self.height + 1,), 2**62, dtype=torch.int64)
        return flat.scatter_reduce(0, pix.to(torch.int64), key, "amin")[:-1]


def onnx_core_ms(xyz_t: torch.Tensor, proj: torch.Tensor, size: int, threads: int, repeats: int) -> tuple[float, float]:
    """Median ms of :class:`ZBufferCore` in ONNX Runtime (CPU) and in torch eager."""
    import tempfile
    import warnings

    import onnxruntime as ort

    core = ZBufferCore(size, size)
    index = torch.arange(xyz_t.shape[1])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = f"{tmp}/zbuffer.onnx"
        torch.onnx.export(
            core,
            (xyz_t, proj, index),
            path,
            input_names=["xyz_t", "proj", "index"],
            output_names=["keys"],
            opset_version=18,
            dynamo=False,
            dynamic_axes={"xyz_t": {1: "n"}, "index": {0: "n"}},
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {"xyz_t": xyz_t.numpy(), "proj": proj.numpy(), "index": index.numpy()}
    if not np.array_equal(session.run(None, feeds)[0], core(xyz_t, proj, index).numpy()):
        raise RuntimeError("ONNX Runtime and torch disagree on the z-buffer core")
    return median_ms(lambda: session.run(None, feeds), repeats), median_ms(lambda: core(xyz_t, proj, index), repeats)


def procedural_views(count: int, size: int, seed: int) -> list:
    scene = generate_scene(seed, "indoor")
    cameras, _ = plan_cameras(scene, count, size, size)
    renderer = Renderer(scene)
    return [renderer.render(cam, name=f"{i:03d}") for i, cam in enumerate(cameras)]


def styles_side_by_side(scene, frames: list, repeats: int) -> None:
    """Median ms per frame of every anchor style at 256x256 and 512x512, alternating styles per
    round so that load on a shared machine hits them alike; ratios to the points style. Eager
    (the first frames, and every caller without ``compiled``) and compiled (the server's
    ``compiled=True``, once the background compile has finished: its steady state).

    Compiled, each frame is also timed with the reference pick that follows it in the server
    (python_bridge/pipeline.py): the ``mesh`` style ranks the source views for its own use and
    the pick reuses that ranking, while after the other styles the pick ranks them itself. The
    ranking is forgotten before every style's frame, so no style reuses another's."""
    from models.anchor import reference
    from models.anchor.styles import STYLES, prepare_anchor

    cams = [f.camera for f in frames]
    for compiled in (False, True):
        prepared = {}
        for name in STYLES:
            start = time.perf_counter()
            prepared[name] = prepare_anchor(scene, name, compiled=compiled)
            print(f"  prepare {name}{' (compiled)' if compiled else ''}: {1e3 * (time.perf_counter() - start):.0f} ms")
        if compiled:  # first frames: eager while the kernels compile in the background
            start = time.perf_counter()
            first = {}
            for name, anchor in prepared.items():
                t0 = time.perf_counter()
                anchor.render(cams[0].K, cams[0].c2w, 256, 256)
                first[name] = 1e3 * (time.perf_counter() - t0)
            compiled_kernels_settled()
            print("  first frame 256x256 with compiled=True (the splatter's kernels compiled above): "
                  + " | ".join(f"{n} {ms:.0f} ms" for n, ms in first.items())
                  + f"; every compiled kernel serving after {time.perf_counter() - start:.1f} s")
        print(machine_line())
        print(f"anchor styles, {'compiled (steady state)' if compiled else 'eager'}, source cameras cycled:")
        for size in (256, 512):
            poses = [(scale_K(c.K, (c.width, c.height), (size, size)), c.c2w) for c in cams]
            times: dict[str, list[float]] = {name: [] for name in prepared}
            with_pick: dict[str, list[float]] = {name: [] for name in prepared}
            for i in range(repeats + 2):
                K, c2w = poses[i % len(poses)]
                for name, anchor in prepared.items():
                    reference._latest = None  # no style reuses the ranking of the one before it
                    start = time.perf_counter()
                    anchor.render(K, c2w, size, size)
                    rendered = time.perf_counter()
                    select_reference(scene, K, c2w, size, size, compiled=compiled)
                    if i >= 2:  # warm-up rounds
                        times[name].append(rendered - start)
                        with_pick[name].append(time.perf_counter() - start)
            arms = [("", times)] + ([(" + reference pick (the server's two stages)", with_pick)] if compiled else [])
            for label, arm in arms:
                base = statistics.median(arm["points"])
                print(f"  {size}x{size}{label}: " + " | ".join(
                    f"{name} {1e3 * statistics.median(t):6.2f} ms ({statistics.median(t) / base:.2f}x points)"
                    for name, t in arm.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--styles-only", action="store_true",
                        help="build the scene, then measure only the anchor styles side by side (issue 22)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    )

    start = time.perf_counter()
    frames = procedural_views(args.views, 256, args.seed)
    print(
        f"rendered {len(frames)} procedural views of 256x256 in {time.perf_counter() - start:.1f} s (not timed below)"
    )

    build_s = [0.0] * 3
    for i in range(3):
        start = time.perf_counter()
        scene = build_scene(frames)
        build_s[i] = time.perf_counter() - start
    cloud = scene.cloud
    print(
        f"\nbuild_scene: {len(frames)} views -> {len(cloud):,} points (voxel {scene.voxel_size * 1000:.2f} mm): "
        f"median {statistics.median(build_s):.2f} s of {[round(s, 2) for s in build_s]} (target <= 5 s)"
    )
    if args.styles_only:
        print(f"\n{len(frames)}-view scene, {len(cloud):,} points:")
        styles_side_by_side(scene, frames, args.repeats)
        return
    layout = to_device(cloud)
    device_bytes = layout.xyz_t.nbytes + layout.rgba.nbytes
    print(
        f"memory: {cloud.nbytes / len(cloud):.0f} bytes/point in PointCloud (xyz float32 + rgb uint8), "
        f"{device_bytes / len(cloud):.0f} in DeviceCloud (rgb padded to int32)"
    )

    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(cloud), size=min(args.points, len(cloud)), replace=False))  # keeps the build's order
    sub = PointCloud(cloud.xyz[pick], cloud.rgb[pick])
    device_cloud = to_device(sub)
    compiled_cloud = to_device(sub, compiled=True)
    n = len(sub)
    cams = [f.camera for f in frames]
    start = time.perf_counter()
    render_cloud(compiled_cloud, cams[0].K, cams[0].c2w, 256, 256)  # eager; starts the background compile
    first = time.perf_counter() - start
    compiled_kernels_settled()
    print(f"\ncompiled kernel: first render {first:.2f} s (eager while the kernel compiles in the background); "
          f"compiled and serving after {time.perf_counter() - start:.1f} s (cached on disk for later runs)")
    print(f"render {n:,} points of the fused scene from the source cameras (cycled); eager | compiled kernel:")
    for size in (512, 256):
        poses = [(scale_K(c.K, (256, 256), (size, size)), c.c2w) for c in cams]
        for radius, gaps in ((0, False), (0, True), (1, True)):
            figures = []
            for dc in (device_cloud, compiled_cloud):
                state = {"i": 0}

                def one(dc=dc, state=state) -> None:
                    K, c2w = poses[state["i"] % len(poses)]
                    state["i"] += 1
                    render_cloud(dc, K, c2w, size, size, splat_radius=radius, fill_gaps=gaps)

                ms, best = timed_ms(one, args.repeats)
                figures.append(f"median {ms:6.2f} ms (fastest {best:6.2f}) {n / ms / 1e3:6.1f} M points/s")
            print(f"  {size}x{size} splat_radius={radius} fill_gaps={gaps!s:5}: {' | '.join(figures)}")
    K512, c2w0 = scale_K(cams[0].K, (256, 256), (512, 512)), cams[0].c2w
    covered = render_cloud(device_cloud, K512, c2w0, 512, 512).mask.float().mean().item()
    uv, z = project(sub.xyz, K512, c2w0)
    in_view = np.mean((z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 512) & (uv[:, 1] >= 0) & (uv[:, 1] < 512))
    print(f"  (first camera: {in_view:.0%} of the points in view, {covered:.0%} of the 512x512 pixels covered)")
    unculled = to_device(sub, chunk=n)
    ms_unculled = median_ms(lambda: render_cloud(unculled, K512, c2w0, 512, 512, fill_gaps=False), args.repeats)
    ms_culled = median_ms(lambda: render_cloud(device_cloud, K512, c2w0, 512, 512, fill_gaps=False), args.repeats)
    print(f"  first camera, 512x512 plain: chunk culling on {ms_culled:.2f} ms, off {ms_unculled:.2f} ms")

    cube = PointCloud(rng.uniform(-2, 2, (n, 3)).astype(np.float32), rng.integers(0, 256, (n, 3), dtype=np.uint8))
    cube_K, cube_pose = K_from_hfov(60, 512, 512), look_at([0, -6, 0.5], [0, 0, 0])
    cube_dev = to_device(cube)
    print(f"  worst case, random cube of {n:,} points seen from outside (all in front, no chunk culled):")
    for name, dc in (("eager", cube_dev), ("compiled", to_device(cube, compiled=True))):
        for size in (512, 256):
            K = scale_K(cube_K, (512, 512), (size, size))
            for gaps in (False, True):
                ms, best = timed_ms(lambda: render_cloud(dc, K, cube_pose, size, size, fill_gaps=gaps), args.repeats)
                print(f"    {name:8} {size}x{size} fill_gaps={gaps!s:5}: median {ms:6.2f} ms (fastest {best:6.2f})")
                if (name, size, gaps) == ("eager", 512, False):
                    ms_cube = ms

    # Baselines on the worst case (every point in front, most in view): the same work for all.
    naive_n = 20_000
    naive_ms = median_ms(
        lambda: naive_render(cube.xyz[:naive_n], cube.rgb[:naive_n], cube_K, cube_pose, 512, 512), 3, 1
    )
    numpy_ms = median_ms(lambda: numpy_render(cube.xyz, cube.rgb, cube_K, cube_pose, 512, 512), 5, 1)
    naive_pps = naive_n / naive_ms
    print(
        f"\nbaselines, random cube at 512x512: naive per-point loop {naive_pps / 1e3:.2f} M points/s "
        f"(measured on {naive_n:,} points: {naive_ms:.0f} ms), vectorised NumPy {numpy_ms:.1f} ms for {n:,}"
    )
    print(
        f"ratios (same run, same cloud and camera): torch plain {n / ms_cube / 1e3:.1f} M points/s is "
        f"{(n / ms_cube) / naive_pps:,.0f}x the naive loop and {numpy_ms / ms_cube:.1f}x faster than vectorised NumPy"
    )

    from models.anchor.splat import projection_matrices

    proj0 = torch.as_tensor(projection_matrices(cube_K, cube_pose, 512, 512)[0], dtype=torch.float32)
    ort_ms, eager_ms = onnx_core_ms(cube_dev.xyz_t, proj0, 512, args.threads, max(5, args.repeats // 3))
    print(
        f"ONNX export of the z-buffer core (ScatterElements min), cube, 512x512: ONNX Runtime CPU {ort_ms:.1f} ms, "
        f"same module in torch eager {eager_ms:.1f} ms, render_cloud (complete, plain) {ms_cube:.1f} ms"
    )

    batch = 4
    poses256 = np.stack([c.c2w for c in cams[:batch]])
    ms_batch = median_ms(lambda: render_views(device_cloud, cams[0].K, poses256, 256, 256), 10)
    ms_single = median_ms(lambda: [render_cloud(device_cloud, cams[0].K, p, 256, 256) for p in poses256], 10)
    print(f"\nbatched: {batch} views 256x256 in one call {ms_batch:.1f} ms vs {batch} calls {ms_single:.1f} ms")

    from models.anchor import reference

    def select_cycled(compiled: bool) -> Callable[[], None]:
        """select_reference over the source cameras in turn, its last ranking forgotten (a new pose each frame)."""
        turn = itertools.cycle(cams)

        def select() -> None:
            reference._latest = None
            cam = next(turn)
            select_reference(scene, cam.K, cam.c2w, 256, 256, compiled=compiled)
        return select

    select_cycled(True)()  # starts the ranking loop's background build
    compiled_kernels_settled()
    ms_eager, ms_compiled = (median_ms(select_cycled(c), 200) for c in (False, True))
    print(f"select_reference over {len(scene.frames)} candidates: {ms_eager:.3f} ms per call eager, "
          f"{ms_compiled:.3f} ms compiled (the server's; target < 2 ms)")

    out = render_cloud(device_cloud, K512, c2w0, 512, 512, splat_radius=0, fill_gaps=False)
    holes = (~out.mask).float().mean().item()
    for method, repeats in (("push_pull", 20), ("telea", 3)):
        ms = median_ms(lambda: fill_holes(out.rgb, out.mask, method), repeats, 1)
        print(f"fill_holes {method} at 512x512 ({holes:.0%} holes): {ms:.1f} ms")

    psnrs = []
    for frame in frames[:: max(1, len(frames) // 10)]:
        cam = frame.camera
        view = render_cloud(cloud, cam.K, cam.c2w, 256, 256)
        m = view.mask.numpy()
        mse = np.mean((view.rgb.numpy()[m].astype(np.float64) - frame.rgb[m]) ** 2)
        psnrs.append(10 * math.log10(255.0**2 / max(mse, 1e-12)))
    print(
        f"\nsource views re-rendered from the fused {len(cloud):,}-point cloud: PSNR on covered pixels "
        f"median {statistics.median(psnrs):.1f} dB, min {min(psnrs):.1f}, max {max(psnrs):.1f} over {len(psnrs)} views"
    )
    print(f"\n{len(frames)}-view scene, {len(cloud):,} points:")
    styles_side_by_side(scene, frames, args.repeats)


if __name__ == "__main__":
    main()
