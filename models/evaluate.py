"""Evaluation on held-out scenes: image metrics, baselines, ablations, multi-view consistency.

Protocol (the same as training builds its samples, so train and test mean the same task):
each held-out scene's views are cut into contiguous windows of ``window`` views along the
trajectory; the cloud is built from every view outside a window, and each view inside it is
a target (never seen by the cloud). The reference is what the server picks
(:func:`models.anchor.select_reference`). Every method produces the target image and is
scored against the ground-truth frame:

* ``generator 1 step`` / ``2 steps``: the exported ONNX model, run by ``runner`` (the
  bridge engine's graphs; :class:`OnnxRunner`), exactly as served;
* ``teacher``: the stage-2 model (PyTorch, DPM-Solver++), when given;
* baselines: ``raw anchor`` (point-cloud rendering, black holes), ``anchor + hole filling``
  (:func:`models.anchor.fill_holes`, push-pull), ``nearest reference`` (the reference image);
* ``ground-truth latent (ceiling)``: the ground truth encoded and decoded by the exported
  graphs (with the anchor, as a generated latent is) -- what a perfect generator would
  score through this encoder and decoder;
* inference-time ablations of the 1-step generator: ``no anchor`` (anchor latent and mask
  zeroed), ``no reference`` (reference latent zeroed), ``no camera`` (the reference camera
  replaced by the target's, so PRoPE sees no relative pose). They measure what the trained
  model relies on; they are not the paper's retrained ablations;
* retrained ablations, when given (``ablations``): teachers trained alike except for one
  change (``DiTConfig.ablate``, ``prope=False``), each sampled like the teacher and decoded
  by the autoencoder's own decoder (``latent_decoder``), which sees no anchor image -- an
  anchor decoder would hand the anchor back to a model trained without it. Rows are
  named ``ablation: <name>``; compare them with each other (the same budget and decoder),
  not with the shipped rows.

Metrics: PSNR (dB, on [0, 1] RGB) and SSIM (Gaussian window 11, sigma 1.5, per channel,
averaged); holes PSNR, pooled over the pixels the cloud leaves empty (where a generator must
invent content), and PSNR per scene. ``side_by_side`` sets several evaluations beside each
other -- ``worldfm eval --out-of-family`` puts scene families no training stage saw first,
then the held-out scenes of the training families. Consistency: for consecutive targets (a, b) of a window, b's pixels are lifted
with b's ground-truth depth, projected into a, and where a's ground-truth depth agrees
(co-visible, within ``covis_tolerance`` relative depth) the mean absolute RGB difference
between the two *generated* frames is taken; the score is that divided by the same number
for the ground-truth frames (1.0 = as consistent as reality; lighting-free renders make
the ground-truth number small but non-zero through resampling). It is reported for the
generated rows and for the two anchor baselines, whose figure shows how much of the
flicker the point cloud alone brings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.anchor import AnchorScene, build_scene, fill_holes, select_reference
from models.anchor.holes import THIN_HOLE_RADIUS, wide_holes
from models.anchor.cloud import unproject_depth
from models.anchor.styles import STYLES, prepare_anchor
from models.cameras import project, scale_K
from models.fill_guard import FillGuard, RenderBoth, guarded_frame, measure_fill_guard
from models.metrics import psnr, ssim
from models.scene import Camera, Frame, Scene

COVIS_TOLERANCE = 0.02  # relative depth agreement for co-visibility


def warp_error(frame_a: np.ndarray, frame_b: np.ndarray, view_a: Frame, view_b: Frame,
               tolerance: float = COVIS_TOLERANCE, only: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Mean |a(warp(p)) - b(p)| (RGB, [0, 255]) over b's pixels p co-visible in a.

    ``frame_a``/``frame_b``: uint8 (H, W, 3) images at ``view_a``/``view_b`` (whose ground-truth
    depth and cameras define the warp). ``only``: bool (H, W) masks of a and b; then only pixels
    p with ``only[1][p]`` and ``only[0][warp(p)]`` count. Returns NaN when no pixel is co-visible.
    """
    h, w = frame_b.shape[:2]
    depth_b = view_b.depth
    pts = unproject_depth(depth_b, view_b.camera.K, view_b.camera.c2w).reshape(-1, 3).numpy()
    uv, z = project(pts.astype(np.float64), view_a.camera.K, view_a.camera.c2w)
    col, row = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h) & (depth_b.reshape(-1) > 0)
    col, row = np.clip(col, 0, w - 1), np.clip(row, 0, h - 1)
    depth_a = view_a.depth[row, col]
    covis = inside & (depth_a > 0) & (np.abs(depth_a - z) <= tolerance * np.maximum(z, 1e-6))
    if only is not None:
        covis &= only[1].reshape(-1) & only[0][row, col]
    if not covis.any():
        return math.nan
    a = frame_a[row[covis], col[covis]].astype(np.float64)
    b = frame_b.reshape(-1, 3)[covis].astype(np.float64)
    return float(np.abs(a - b).mean())


@dataclass
class Target:
    """One evaluation frame: the ground truth, its anchor and reference, and its window position."""

    scene: str
    window: int
    frame: Frame
    reference: Frame
    anchor_rgb: np.ndarray  # uint8 (H, W, 3), black where empty
    anchor_mask: np.ndarray  # bool (H, W)
    kept: Sequence[Frame] = ()  # the scene's views outside the window: all a server would hold (the fill guard's)


def held_out_windows(scene: Scene, window: int = 4, stride: int = 1) -> list[tuple[int, AnchorScene, list[Frame]]]:
    """(window index, anchor built without the window, every ``stride``-th view of it) per window."""
    views = scene.frames
    out = []
    for w0 in range(0, len(views), window):
        inside = list(range(w0, min(w0 + window, len(views))))
        kept = [views[i] for i in range(len(views)) if i not in inside]
        out.append((w0 // window, build_scene(kept), [views[i] for i in inside[::stride]]))
    return out


def evaluation_targets(scene: Scene, window: int = 4, stride: int = 1, anchor_style: str | None = None) -> list[Target]:
    """The targets of one held-out scene (see the module docstring); every ``stride``-th view.
    Anchors are rendered in ``anchor_style`` (default: ``models.anchor.styles.DEFAULT_STYLE``)."""
    return [t for index, anchor, targets in held_out_windows(scene, window, stride)
            for t in window_targets(scene.name, index, anchor, targets, anchor_style)]


def window_targets(scene_name: str, index: int, anchor: AnchorScene, frames: Sequence[Frame],
                   anchor_style: str | None = None) -> list[Target]:
    """``frames`` as targets of the cloud ``anchor`` (built without them): anchor rendered in
    ``anchor_style``, reference picked as the server picks it."""
    prepared = prepare_anchor(anchor, anchor_style)
    out = []
    for f in frames:
        cam = f.camera
        r = prepared.render(cam.K, cam.c2w, cam.width, cam.height)
        ref = anchor.frames[select_reference(anchor, cam.K, cam.c2w, cam.width, cam.height)]
        out.append(Target(scene_name, index, f, ref, r.rgb.numpy(), r.mask.numpy(), tuple(anchor.frames)))
    return out


def covered_psnr(anchor: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of uint8 (H, W, 3) ``anchor`` against ``truth`` on the pixels ``mask`` covers (NaN if none)."""
    if not mask.any():
        return math.nan
    return psnr(anchor[mask][None], truth[mask][None])


@dataclass
class AnchorReport:
    """The raw anchor of each style on each set of held-out scenes.

    ``rows[set][style]``: ``covered_psnr`` (dB, mean over targets of the PSNR on the pixels
    the anchor covers), ``coverage`` (mean share of covered pixels), ``consistency`` (warp
    error of the raw anchor between consecutive targets over the ground truth's, on pixels
    covered in both; see :func:`warp_error`), ``render_ms`` (median per frame on this
    machine, a busy one included), ``targets``.
    """

    rows: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def markdown(self) -> str:
        sets = list(self.rows)
        styles = list(dict.fromkeys(style for per_set in self.rows.values() for style in per_set))
        head = "| anchor style | " + " | ".join(f"{s}: covered PSNR (dB) | coverage | consistency (x GT)"
                                              for s in sets) + " |"
        lines = [head, "|---|" + "---:|---:|---:|" * len(sets)]
        for style in styles:
            cells = []
            for s in sets:
                m = self.rows[s].get(style)
                cells.append(f"{m['covered_psnr']:.2f} | {m['coverage']:.3f} | {m['consistency']:.2f}" if m
                             else "- | - | -")
            lines.append(f"| {style} | " + " | ".join(cells) + " |")
        counts = ", ".join(f"{s}: {next(iter(self.rows[s].values()))['targets']:.0f} targets"
                           for s in sets if self.rows[s])
        lines.append(f"\nRaw anchors of held-out views ({counts}); covered PSNR counts only the pixels each "
                     "style covers.")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"rows": self.rows}


def minified(frame: Frame, factor: int) -> Frame:
    """``frame`` as a camera ``factor`` times coarser would see it: the same pose, K scaled to
    ``(W // factor, H // factor)``, each pixel the mean of the ``factor`` x ``factor`` pixels it
    spans (the truth a pixel integrates; the procedural renderer samples one ray per pixel, so its
    own coarse renders alias) and the depth sampled near each pixel's centre (for the warps of
    :func:`warp_error`). The far-camera check of anti-aliasing (docs/anchor.md)."""
    import cv2

    if factor == 1:
        return frame
    cam = frame.camera
    w, h = cam.width // factor, cam.height // factor
    if min(w, h) < 1:
        raise ValueError(f"{frame.name!r} ({cam.width} x {cam.height}) has no pixel at 1/{factor} size")
    crop = frame.rgb[: h * factor, : w * factor]
    rgb = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    depth = None if frame.depth is None else frame.depth[factor // 2 :: factor, factor // 2 :: factor][:h, :w]
    # the crop keeps the top-left corner: exactly 1/factor of the pixel grid, whatever W % factor
    return Frame(rgb, Camera(scale_K(cam.K, (w * factor, h * factor), (w, h)), cam.c2w, w, h), depth, frame.name)


def anchor_report(sets: Mapping[str, Sequence[Scene]], styles: Sequence[str] | None = None, window: int = 4,
                  stride: int = 1, progress: bool = True, minify: Sequence[int] = (1,)) -> AnchorReport:
    """Score the raw anchor of every style in ``styles`` (default: all registered) on each named
    set of held-out scenes (e.g. ``{"in family": [...], "out of family": [...]}``), with the
    evaluation protocol of the module docstring. Each window's scene is built once and
    rendered in every style. Per factor ``f`` in ``minify`` above 1, the targets are also
    scored at 1/f size (:func:`minified`: textures seen from afar), as set ``"NAME, 1/f size"``."""
    import time

    from tqdm import tqdm

    styles = list(styles or STYLES)
    report = AnchorReport()
    for set_name, scenes in sets.items():
        names = {f: set_name if f == 1 else f"{set_name}, 1/{f} size" for f in minify}
        times: dict[tuple[int, str], list[float]] = {(f, s): [] for f in minify for s in styles}
        images: dict[tuple[int, str], dict[tuple[str, int], list[tuple[Frame, np.ndarray, np.ndarray]]]] = {
            (f, s): {} for f in minify for s in styles}
        truth: dict[int, dict[tuple[str, int], list[tuple[Frame, np.ndarray]]]] = {f: {} for f in minify}
        for scene in tqdm(scenes, desc=f"anchors ({set_name})", unit="scene", disable=not progress):
            for index, anchor, full in held_out_windows(scene, window, stride):
                targets = {f: [minified(t, f) for t in full] for f in minify}
                for f, views in targets.items():
                    for t in views:
                        truth[f].setdefault((scene.name, index), []).append((t, t.rgb))
                for style in styles:
                    prepared = prepare_anchor(anchor, style)
                    for f, views in targets.items():
                        for t in views:
                            cam = t.camera
                            start = time.perf_counter()
                            out = prepared.render(cam.K, cam.c2w, cam.width, cam.height)
                            times[f, style].append(time.perf_counter() - start)
                            images[f, style].setdefault((scene.name, index), []).append(
                                (t, out.rgb.numpy(), out.mask.numpy()))
        for f in minify:
            report.rows[names[f]] = {}
            for style in styles:
                arr = np.array([(covered_psnr(rgb, t.rgb, mask), float(mask.mean()))
                                for seq in images[f, style].values() for t, rgb, mask in seq],
                               dtype=np.float64).reshape(-1, 2)
                report.rows[names[f]][style] = {
                    "covered_psnr": float(np.nanmean(arr[:, 0])) if len(arr) else math.nan,
                    "coverage": float(arr[:, 1].mean()) if len(arr) else math.nan,
                    "consistency": _covered_consistency(images[f, style], truth[f]),
                    "render_ms": 1e3 * float(np.median(times[f, style])) if times[f, style] else math.nan,
                    "targets": float(len(arr)),
                }
    return report


class OnnxRunner:
    """The exported model through ``python_bridge``-independent ONNX Runtime sessions.

    Mirrors the served path: encode anchor and reference, run ``generator_N`` on
    ``noise`` the caller draws, decode. Inputs as the export contract states.
    """

    def __init__(self, folder: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.sessions = {k: ort.InferenceSession(str(self.folder / v), opts, providers=["CPUExecutionProvider"])
                         for k, v in self.manifest["graphs"].items()}

    @property
    def steps(self) -> list[int]:
        return list(self.manifest["steps"])

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        image = (rgb.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0)
        return self.sessions["encoder"].run(None, {"image": image})[0]

    @property
    def anchor_filled(self) -> bool:
        """Whether the generator reads the anchor with its holes filled (``DiTConfig.anchor_filled``)."""
        return bool(self.manifest["config"].get("anchor_filled", False))

    @property
    def decoder_uses_anchor(self) -> bool:
        return "anchor" in {i.name for i in self.sessions["decoder"].get_inputs()}

    def decode(self, latent: np.ndarray, anchor: np.ndarray, anchor_mask: np.ndarray) -> np.ndarray:
        """latent -> RGB uint8; ``anchor`` (filled, uint8 (H, W, 3)) and ``anchor_mask`` (H, W)
        reach decoders that use them (``models.autoencoder.AnchorDecoder``)."""
        feed = {"latent": latent.astype(np.float32)}
        if self.decoder_uses_anchor:
            feed["anchor"] = anchor.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
            feed["anchor_mask"] = anchor_mask.astype(np.float32)[None, None]
        image = self.sessions["decoder"].run(None, feed)[0][0]
        return np.clip((image.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)

    def generate(self, steps: int, noise: np.ndarray, inputs: dict[str, np.ndarray]) -> np.ndarray:
        sess = self.sessions[f"generator_{steps}"]
        wanted = {i.name for i in sess.get_inputs()}  # the exporter drops inputs a graph does not use
        feed = {"noise": noise, **inputs}
        return sess.run(None, {k: v.astype(np.float32) for k, v in feed.items() if k in wanted})[0]


def target_inputs(runner: OnnxRunner, t: Target, filled: np.ndarray) -> dict[str, np.ndarray]:
    """The generator inputs of target ``t`` (latents encoded by ``runner``), batch 1. ``filled``:
    ``t``'s anchor with its holes filled, encoded in place of the raw anchor for a model that
    takes filled anchors (``models.dit.DiTConfig.anchor_filled``)."""
    return {
        "anchor_latent": runner.encode(filled if runner.anchor_filled else t.anchor_rgb),
        "anchor_mask": t.anchor_mask.astype(np.float32)[None, None],
        "ref_latent": runner.encode(t.reference.rgb),
        "ref_K": t.reference.camera.K[None], "ref_c2w": t.reference.camera.c2w[None],
        "tgt_K": t.frame.camera.K[None], "tgt_c2w": t.frame.camera.c2w[None],
    }


def runner_frames(runner: OnnxRunner, anchor_style: str | None = None,
                  seed: int = 0) -> RenderBoth:
    """:func:`models.fill_guard.measure_fill_guard`'s frame source for ``runner``: per target, the
    1-step frame (noise from ``seed``, drawn afresh per call), anchor + hole filling and the
    pixels the anchor covers."""
    c, h, w = runner.manifest["latent_shape"]

    def render_both(anchor: AnchorScene, frames: list[Frame]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)
        out = []
        for t in window_targets("", 0, anchor, frames, anchor_style):
            noise = rng.standard_normal((1, 1, c, h, w), dtype=np.float32)
            filled = fill_holes(torch.from_numpy(t.anchor_rgb), torch.from_numpy(t.anchor_mask)).numpy()
            latent = runner.generate(1, noise, target_inputs(runner, t, filled))
            out.append((runner.decode(latent, filled, t.anchor_mask), filled, t.anchor_mask))
        return out

    return render_both


# (An anchor decoder also loses the anchor image in "no anchor": see ``evaluate``.)
ABLATIONS: dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
    "1 step, no anchor": lambda x: {**x, "anchor_latent": np.zeros_like(x["anchor_latent"]),
                                    "anchor_mask": np.zeros_like(x["anchor_mask"])},
    "1 step, no reference": lambda x: {**x, "ref_latent": np.zeros_like(x["ref_latent"])},
    "1 step, no camera": lambda x: {**x, "ref_K": x["tgt_K"], "ref_c2w": x["tgt_c2w"]},
}


# What a perfect generator would score: the ground truth's own latent through the same decoder.
CEILING = "ground-truth latent (ceiling)"


@dataclass
class EvalResult:
    """Per-method mean metrics, consistency ratios and per-scene PSNR of one set of scenes.

    ``rows[method]``: ``psnr`` and ``ssim`` (means over targets) and ``holes_psnr``, the PSNR
    of all pixels the point cloud leaves empty, pooled over the set (NaN without holes): the
    pixels where the anchor has nothing to say and a generator must invent content; split
    into ``thin_holes_psnr`` and ``wide_holes_psnr`` by :func:`wide_holes` (slivers that a
    classical fill bridges from both sides, against disocclusions where content must be
    invented), with ``wide_hole_share`` the wide holes' share of the hole pixels.
    ``per_scene[scene][method]``: mean PSNR over that scene's targets.
    """

    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    consistency: dict[str, float] = field(default_factory=dict)
    per_scene: dict[str, dict[str, float]] = field(default_factory=dict)
    targets: int = 0
    scenes: int = 0
    wide_hole_share: float = math.nan
    # scene -> per window, the model's gain over the fill (dB) on the views the guard left out, and
    # the model's weight in the frames it served (None: too few views to measure; the model served)
    fill_guard: dict[str, list[float | None]] = field(default_factory=dict)
    fill_guard_weights: dict[str, list[float | None]] = field(default_factory=dict)

    def markdown(self) -> str:
        lines = ["| method | PSNR (dB) | SSIM | holes PSNR (dB) | consistency (x GT) |", "|---|---:|---:|---:|---:|"]
        for name, m in self.rows.items():
            lines.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.3f} | {_fmt(m.get('holes_psnr'))} | "
                         f"{_fmt(self.consistency.get(name))} |")
        lines.append(f"\n{self.targets} targets from {self.scenes} held-out scenes.")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"rows": self.rows, "consistency": self.consistency, "per_scene": self.per_scene,
                "targets": self.targets, "scenes": self.scenes, "wide_hole_share": self.wide_hole_share,
                "fill_guard": self.fill_guard, "fill_guard_weights": self.fill_guard_weights}


def _fmt(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "-"


GENERATOR_ROW, FILL_ROW = "generator 1 step", "anchor + hole filling"
GUARD_ROW = "generator 1 step, fill guard"


def side_by_side(sets: Mapping[str, EvalResult]) -> str:
    """One markdown table of several evaluation sets (e.g. out-of-family, then in-family), their
    columns side by side in the given order, and per set the 1-step generator's margin over
    anchor + hole filling scene by scene (a model that generalises beats it on every scene)."""
    names = list(sets)
    methods = list(dict.fromkeys(m for r in sets.values() for m in r.rows))
    head = "| method | " + " | ".join(f"{n}: PSNR | SSIM | holes | cons." for n in names) + " |"
    lines = [head, "|---|" + "---:|---:|---:|---:|" * len(names)]
    for method in methods:
        cells = []
        for r in sets.values():
            m = r.rows.get(method)
            cells += (["-"] * 4 if m is None else
                      [_fmt(m["psnr"]), _fmt(m["ssim"], 3), _fmt(m.get("holes_psnr")), _fmt(r.consistency.get(method))])
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, r in sets.items():
        lines.append(f"{name}: {r.targets} targets from {r.scenes} scenes.")
        for row, label in ((GENERATOR_ROW, "1 step"), (GUARD_ROW, "1 step with the fill guard")):
            margins = {scene: m[row] - m[FILL_ROW] for scene, m in r.per_scene.items() if row in m and FILL_ROW in m}
            if margins:
                lines.append(f"  {label} minus anchor + hole filling, per scene (dB): "
                             + ", ".join(f"{scene} {v:+.2f}" for scene, v in margins.items())
                             + f"; below it on {sum(v < 0 for v in margins.values())} of {len(margins)}.")
        if r.fill_guard_weights:  # windows whose guard served the model (alone or mixed), per scene
            weights = r.fill_guard_weights
            chose = {scene: sum(w is None or w > 0 for w in ws) for scene, ws in weights.items()}
            mixed = sum(w is not None and 0 < w < 1 for ws in weights.values() for w in ws)
            lines.append(f"  fill guard: the model in {sum(chose.values())} of {sum(map(len, weights.values()))} "
                         "windows (" + ", ".join(f"{scene} {n}/{len(weights[scene])}" for scene, n in chose.items())
                         + f"), mixed with the fill in {mixed} of them.")
        gen, fill = r.rows.get(GENERATOR_ROW), r.rows.get(FILL_ROW)
        if gen and fill and "wide_holes_psnr" in gen:
            lines.append(f"  holes by width, 1 step vs anchor + hole filling (dB): thin "
                         f"{_fmt(gen['thin_holes_psnr'])} vs {_fmt(fill['thin_holes_psnr'])}, wide "
                         f"{_fmt(gen['wide_holes_psnr'])} vs {_fmt(fill['wide_holes_psnr'])} (wide: more than "
                         f"{THIN_HOLE_RADIUS} px from any covered pixel somewhere; "
                         f"{_fmt(100 * r.wide_hole_share, 0)} % of the hole pixels).")
    return "\n".join(lines)


def evaluate(
    runner: OnnxRunner,
    scenes: Sequence[Scene],
    teacher: torch.nn.Module | None = None,
    teacher_steps: int = 10,
    window: int = 4,
    stride: int = 1,
    seed: int = 0,
    strip: Path | None = None,
    strip_rows: int = 4,
    progress: bool = True,
    ablations: Mapping[str, torch.nn.Module] | None = None,
    latent_decoder: torch.nn.Module | None = None,
    anchor_style: str | None = None,
    fill_guard: bool = True,
) -> EvalResult:
    """Score every method on the held-out ``scenes``; optionally write an image strip
    (reference | anchor | 1 step | ground truth per row) to ``strip``. ``ablations``
    (name -> teacher) need ``latent_decoder`` (scaled latent -> image in [-1, 1]). ``anchor_style``:
    how anchors are rendered (``models.anchor.styles``; default its ``DEFAULT_STYLE``).
    ``fill_guard``: add the row ``generator 1 step, fill guard`` (:mod:`models.fill_guard`, as the
    server serves a scene once it has measured the guard), the guard measured per window on the
    views outside it."""
    from tqdm import tqdm

    from models.sampling import Condition, generate
    from models.train import CONDITION_KEYS, to_uint8

    if ablations and latent_decoder is None:
        raise ValueError("retrained ablations are decoded by the autoencoder's own decoder: pass latent_decoder")

    rng = np.random.default_rng(seed)
    c, h, w = runner.manifest["latent_shape"]
    scores: dict[str, list[tuple[float, float]]] = {}
    # method -> hole kind ("all", "thin", "wide") -> [squared error summed over its pixels, value count]
    holes: dict[str, dict[str, list[float]]] = {}
    by_scene: dict[str, dict[str, list[float]]] = {}
    images: dict[str, dict[tuple[str, int], list[tuple[Frame, np.ndarray]]]] = {}
    strip_images = []
    guards: dict[tuple[str, int], FillGuard | None] = {}
    render_both = runner_frames(runner, anchor_style, seed)
    targets = [t for s in scenes for t in evaluation_targets(s, window, stride, anchor_style)]
    for t in tqdm(targets, desc="eval", unit="frame", disable=not progress):
        gt = t.frame.rgb
        noise = rng.standard_normal((1, 2, c, h, w), dtype=np.float32)
        filled = fill_holes(torch.from_numpy(t.anchor_rgb), torch.from_numpy(t.anchor_mask)).numpy()
        x = target_inputs(runner, t, filled)
        out = {
            "raw anchor": t.anchor_rgb,
            "anchor + hole filling": filled,
            "nearest reference": t.reference.rgb,
        }

        def decode(z: np.ndarray, blank: bool = False) -> np.ndarray:
            if blank:
                return runner.decode(z, np.zeros_like(filled), np.zeros_like(t.anchor_mask))
            return runner.decode(z, filled, t.anchor_mask)

        out[CEILING] = decode(runner.encode(gt))

        for s in runner.steps:
            out[f"generator {s} step{'s' if s > 1 else ''}"] = decode(runner.generate(s, noise[:, :s], x))
        cond = Condition(*(torch.from_numpy(x[k]).float() for k in CONDITION_KEYS))
        if teacher is not None:
            z = generate(teacher, cond, sampler="teacher", steps=teacher_steps, noise=torch.from_numpy(noise[:, 0]))
            out[f"teacher ({teacher_steps} steps)"] = decode(z.numpy())
        for name, model in (ablations or {}).items():
            z = generate(model, cond, sampler="teacher", steps=teacher_steps, noise=torch.from_numpy(noise[:, 0]))
            with torch.no_grad():
                out[f"ablation: {name}"] = to_uint8(latent_decoder(z))[0]
        if fill_guard and 1 in runner.steps:  # as served: the guard measured on the views the cloud holds
            key = (t.scene, t.window)
            if key not in guards:
                guards[key] = measure_fill_guard(t.kept, render_both)
            guard = guards[key]
            out[GUARD_ROW] = (out[GENERATOR_ROW] if guard is None
                              else guarded_frame(out[GENERATOR_ROW], filled, t.anchor_mask, guard.weight))
        if 1 in runner.steps:
            for name, ablate in ABLATIONS.items():
                out[name] = decode(runner.generate(1, noise[:, :1], ablate(x)), blank=name == "1 step, no anchor")
        out["ground truth"] = gt
        empty = ~t.anchor_mask
        wide = wide_holes(t.anchor_mask)
        kinds = {"all": empty, "thin": empty & ~wide, "wide": wide}
        for name, img in out.items():
            if name != "ground truth":
                value = psnr(img, gt)
                scores.setdefault(name, []).append((value, ssim(img, gt)))
                by_scene.setdefault(t.scene, {}).setdefault(name, []).append(value)
                for kind, pixels in kinds.items():
                    err = holes.setdefault(name, {}).setdefault(kind, [0.0, 0])
                    err[0] += float(np.square(img[pixels].astype(np.float64) - gt[pixels]).sum()) / 255.0**2
                    err[1] += int(pixels.sum()) * 3
            images.setdefault(name, {}).setdefault((t.scene, t.window), []).append((t.frame, img))
        if strip is not None and len(strip_images) < strip_rows:
            gen = out.get("generator 1 step", next(iter(out.values())))
            strip_images.append([t.reference.rgb, t.anchor_rgb, gen, gt])
    result = EvalResult(targets=len(targets), scenes=len(scenes))
    for (scene, _), guard in guards.items():
        result.fill_guard.setdefault(scene, []).append(None if guard is None else guard.gain_db)
        result.fill_guard_weights.setdefault(scene, []).append(None if guard is None else guard.weight)
    for name, values in scores.items():
        arr = np.array(values)
        finite = arr[np.isfinite(arr[:, 0])]
        hole_psnr = {kind: math.nan if n == 0 else (math.inf if se == 0 else 10.0 * math.log10(n / se))
                     for kind, (se, n) in holes[name].items()}
        result.rows[name] = {"psnr": float(finite[:, 0].mean()), "ssim": float(arr[:, 1].mean()),
                             "holes_psnr": hole_psnr["all"], "thin_holes_psnr": hole_psnr["thin"],
                             "wide_holes_psnr": hole_psnr["wide"]}
    if holes:
        counts = next(iter(holes.values()))
        result.wide_hole_share = counts["wide"][1] / counts["all"][1] if counts["all"][1] else math.nan
    result.per_scene = {scene: {name: float(np.mean([v for v in vals if math.isfinite(v)] or [math.nan]))
                                for name, vals in methods.items()} for scene, methods in by_scene.items()}
    gt_err = _sequence_error(images["ground truth"])
    for name in result.rows:
        if name.startswith(("generator", "teacher", "raw anchor", "anchor +")):
            result.consistency[name] = _sequence_error(images[name]) / gt_err
    if strip is not None and strip_images:
        from PIL import Image

        grid = np.concatenate([np.concatenate(r, axis=1) for r in strip_images], axis=0)
        strip.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(strip)
    return result


def _covered_consistency(anchors: dict[tuple[str, int], list[tuple[Frame, np.ndarray, np.ndarray]]],
                         truth: dict[tuple[str, int], list[tuple[Frame, np.ndarray]]]) -> float:
    """Warp error of raw anchors over the ground truth's, both on the pixels the anchor covers in
    both frames of each consecutive pair: texture shimmer and misregistration, not coverage
    changes (a hole next to a covered pixel would count as a 100-level flicker otherwise)."""
    ours, theirs = [], []
    for key, seq in anchors.items():
        for (a, a_img, a_mask), (b, b_img, b_mask), (_, a_gt), (_, b_gt) in zip(seq, seq[1:], truth[key],
                                                                                 truth[key][1:]):
            mine = warp_error(a_img, b_img, a, b, only=(a_mask, b_mask))
            if math.isfinite(mine):
                ours.append(mine)
                theirs.append(warp_error(a_gt, b_gt, a, b, only=(a_mask, b_mask)))
    return float(np.mean(ours) / np.mean(theirs)) if ours else math.nan


def _sequence_error(windows: dict[tuple[str, int], list[tuple[Frame, np.ndarray]]]) -> float:
    """Mean :func:`warp_error` over consecutive frames of every window."""
    errors = [warp_error(a_img, b_img, a, b)
              for seq in windows.values() for (a, a_img), (b, b_img) in zip(seq, seq[1:])]
    errors = [e for e in errors if math.isfinite(e)]
    return float(np.mean(errors)) if errors else math.nan
