"""Training pairs: (reference view, target view, target-view anchor) from posed RGB-D scenes.

Each training sample mirrors one inference frame. For a target view of a scene:

* the **anchor** is the point cloud rendered at the target camera, where the cloud is
  built *without* the target view and a window of its neighbours along the trajectory
  (as at inference, where the target pose is new). Views are grouped in contiguous
  windows of ``window`` views; each window's targets see the cloud of all other views.
  A target at a window's edge has a close view in the cloud, one in its middle a far one:
  a spread of anchor coverage comes with it. A second pass shifts the windows by half.
  Its holes stay black, or are filled by push-pull for a model that takes a filled anchor
  (``PairConfig.anchor_filled``, from ``models.dit.DiTConfig.anchor_filled``).
* the **reference** is one of the cloud's views: at sampling time one of the
  ``ref_choices`` best by :func:`models.anchor.reference.reference_scores` (the best one
  is what inference picks), so reference baselines vary too.
* **augmentation** keeps cameras consistent: a random crop of the target (its K shifted
  and rescaled, the anchor rendered with that K, the target image resampled) and a
  per-scene horizontal flip of every image, with the cameras of a mirrored world
  (:func:`models.cameras.mirror_camera`).

Latents are encoded once and kept in an on-disk cache (one safetensors file per scene and
cache key), since encoding dominates the data cost on CPU. ``PairDataset`` then serves
samples from memory; ``pair_loader`` wraps it in a ``DataLoader`` with workers.

This module takes ``models.scene.Scene`` objects; reading dataset folders is the caller's
job (``worldfm train`` does it with ``datagen.dataset``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.anchor import build_scene, fill_holes
from models.anchor.reference import reference_scores
from models.anchor.styles import DEFAULT_STYLE, prepare_anchor
from models.cameras import crop_K, mirror_camera
from models.scene import Scene

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass(frozen=True)
class PairConfig:
    """How samples are drawn (part of the cache key).

    ``window``: views per left-out window (targets' neighbours excluded from the cloud).
    ``passes``: window offsets (1 or 2; the second shifts windows by ``window // 2``).
    ``ref_choices``: the reference is drawn among this many best-covering cloud views.
    ``crop_prob`` / ``min_crop``: chance of cropping a target, smallest crop side as a
    fraction of the image. ``flip_prob``: chance a scene is mirrored. ``splat_radius``:
    anchor splat radius in pixels (as the server renders). ``anchor_style``: how anchors are
    rendered (``models.anchor.styles``; the server renders the style the model's manifest names).
    ``anchor_filled``: encode the anchor with its holes filled by push-pull, for a model whose
    ``DiTConfig.anchor_filled`` says so.
    """

    image_size: int = 256
    window: int = 4
    passes: int = 1
    ref_choices: int = 3
    crop_prob: float = 0.5
    min_crop: float = 0.75
    flip_prob: float = 0.5
    splat_radius: int = 0
    seed: int = 0
    anchor_style: str = DEFAULT_STYLE
    anchor_filled: bool = False


def _to_image(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [-1, 1]."""
    t = torch.tensor(np.asarray(rgb)).permute(2, 0, 1).float()
    return t / 127.5 - 1.0


def _windows(n_views: int, window: int, offset: int) -> list[list[int]]:
    """Contiguous windows of view indices covering 0..n-1, with boundaries at ``offset + k * window``."""
    edges = sorted({0, *range(offset, n_views, window), n_views})
    return [list(range(a, b)) for a, b in zip(edges, edges[1:])]


def cache_key(config: PairConfig, encoder_id: str) -> str:
    """A short hash of everything a cached file depends on."""
    text = json.dumps({"v": CACHE_VERSION, "pairs": asdict(config), "encoder": encoder_id}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encoder_fingerprint(encoder: nn.Module) -> str:
    """A hash of an encoder's weights, so a retrained autoencoder invalidates the cache."""
    h = hashlib.sha256()
    for name, value in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def _encode(encoder: nn.Module, images: list[torch.Tensor], batch: int = 8) -> torch.Tensor:
    out = [encoder(torch.stack(images[i : i + batch])) for i in range(0, len(images), batch)]
    return torch.cat(out)


def build_scene_samples(scene: Scene, scene_index: int, encoder: nn.Module, config: PairConfig) -> dict[str, torch.Tensor]:
    """Render, augment and encode every sample of one scene (see the module docstring).

    Returns tensors: ``frame_latent`` (V, C, h, w) of every view (flipped if the scene is),
    ``frame_K``/``frame_c2w`` (V, 3, 3)/(V, 4, 4); per sample S: ``target_latent``,
    ``anchor_latent`` (S, C, h, w), ``anchor_mask`` (S, 1, H, W) uint8, ``tgt_K`` (S, 3, 3),
    ``tgt_c2w`` (S, 4, 4), ``refs`` (S, ref_choices) view indices, best first (-1 = none).
    """
    size = config.image_size
    views = scene.frames
    if any(f.camera.width != size or f.camera.height != size for f in views):
        raise ValueError(f"scene {scene.name!r}: pairs need {size}x{size} frames; render the dataset at that size")
    rng = np.random.default_rng([config.seed, scene_index])
    flip = bool(rng.random() < config.flip_prob)

    def oriented(rgb: np.ndarray) -> torch.Tensor:
        image = _to_image(rgb)
        return image.flip(-1) if flip else image

    def camera(K: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return mirror_camera(K, c2w, size) if flip else (np.asarray(K, np.float64), np.asarray(c2w, np.float64))

    frame_latent = _encode(encoder, [oriented(f.rgb) for f in views])
    frame_cams = [camera(f.camera.K, f.camera.c2w) for f in views]
    targets, anchors, masks, tgt_K, tgt_c2w, refs, crop_images = [], [], [], [], [], [], []
    offsets = [0, config.window // 2][: config.passes]
    for offset in offsets:
        for window in _windows(len(views), config.window, offset):
            kept = [i for i in range(len(views)) if i not in window]
            if not kept:
                raise ValueError(f"scene {scene.name!r} has {len(views)} views; it needs more than window={config.window}")
            anchor_scene = build_scene([views[i] for i in kept], seed=config.seed)
            prepared = prepare_anchor(anchor_scene, config.anchor_style, splat_radius=config.splat_radius)
            for t in window:
                frame = views[t]
                K = frame.camera.K
                box = (0, 0, size, size)
                if rng.random() < config.crop_prob:
                    side = int(round(size * rng.uniform(config.min_crop, 1.0)))
                    box = (int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1)), side, side)
                    K = crop_K(K, box, size)
                render = prepared.render(K, frame.camera.c2w, size, size)
                scores = reference_scores(anchor_scene.references, K, frame.camera.c2w, size, size)
                order = [kept[j] for j in np.argsort(-scores, kind="stable")[: config.ref_choices]]
                refs.append(order + [-1] * (config.ref_choices - len(order)))
                rgb = fill_holes(render.rgb, render.mask) if config.anchor_filled else render.rgb
                anchors.append(oriented(rgb.numpy()))
                mask = render.mask.numpy().astype(np.uint8)
                masks.append(torch.from_numpy(mask[:, ::-1].copy() if flip else mask))
                k_o, c2w_o = camera(K, frame.camera.c2w)
                tgt_K.append(k_o)
                tgt_c2w.append(c2w_o)
                if box[2] == size:
                    targets.append(frame_latent[t])
                    crop_images.append(None)
                else:
                    x0, y0, side, _ = box
                    crop = _to_image(frame.rgb)[:, y0 : y0 + side, x0 : x0 + side][None]
                    image = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
                    targets.append(None)
                    crop_images.append(image.flip(-1) if flip else image)
    pending = [i for i, img in enumerate(crop_images) if img is not None]
    if pending:
        for i, z in zip(pending, _encode(encoder, [crop_images[i] for i in pending])):
            targets[i] = z
    return {
        "frame_latent": frame_latent.contiguous(),
        "frame_K": torch.tensor(np.stack([k for k, _ in frame_cams]), dtype=torch.float32),
        "frame_c2w": torch.tensor(np.stack([c for _, c in frame_cams]), dtype=torch.float32),
        "target_latent": torch.stack(targets).contiguous(),
        "anchor_latent": _encode(encoder, anchors).contiguous(),
        "anchor_mask": torch.stack(masks)[:, None].contiguous(),
        "tgt_K": torch.tensor(np.stack(tgt_K), dtype=torch.float32),
        "tgt_c2w": torch.tensor(np.stack(tgt_c2w), dtype=torch.float32),
        "refs": torch.tensor(refs, dtype=torch.int64),
    }


def cached_scene_samples(
    scene: Scene, scene_index: int, encoder: nn.Module, config: PairConfig, cache_dir: str | Path | None, key: str
) -> dict[str, torch.Tensor]:
    """:func:`build_scene_samples`, read from / written to ``cache_dir/<scene>-<key>.safetensors``."""
    if cache_dir is None:
        return build_scene_samples(scene, scene_index, encoder, config)
    path = Path(cache_dir) / f"{scene.name}-{scene_index}-{key}.safetensors"
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    samples = build_scene_samples(scene, scene_index, encoder, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(samples, str(tmp))
    tmp.replace(path)
    return samples


class PairDataset(Dataset):
    """Training pairs of many scenes, served from memory.

    ``__getitem__`` returns a dict: ``target_latent``, ``anchor_latent``, ``ref_latent``
    (C, h, w); ``anchor_mask`` (1, H, W) float; ``ref_K``/``tgt_K`` (3, 3); ``ref_c2w``/
    ``tgt_c2w`` (4, 4). The reference is drawn per call among the sample's candidates.
    """

    def __init__(
        self,
        scenes: Sequence[Scene],
        encoder: nn.Module,
        config: PairConfig = PairConfig(),
        cache_dir: str | Path | None = None,
        progress: bool = False,
    ):
        from tqdm import tqdm

        if not scenes:
            raise ValueError("PairDataset needs at least one scene")
        self.config = config
        key = cache_key(config, encoder_fingerprint(encoder))
        encoder = encoder.eval()
        self.scenes = [
            cached_scene_samples(s, i, encoder, config, cache_dir, key)
            for i, s in enumerate(tqdm(scenes, desc="pairs", unit="scene", disable=not progress))
        ]
        self.index = [(si, j) for si, s in enumerate(self.scenes) for j in range(len(s["target_latent"]))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        si, j = self.index[i]
        s = self.scenes[si]
        candidates = s["refs"][j][s["refs"][j] >= 0]
        r = int(candidates[torch.randint(len(candidates), ())])
        return {
            "target_latent": s["target_latent"][j],
            "anchor_latent": s["anchor_latent"][j],
            "anchor_mask": s["anchor_mask"][j].float(),
            "ref_latent": s["frame_latent"][r],
            "ref_K": s["frame_K"][r],
            "ref_c2w": s["frame_c2w"][r],
            "tgt_K": s["tgt_K"][j],
            "tgt_c2w": s["tgt_c2w"][j],
        }


def pair_loader(dataset: Dataset, batch_size: int, workers: int = 0, seed: int = 0, sampler=None) -> DataLoader:
    """A shuffling, endless-friendly ``DataLoader`` over ``dataset`` (``sampler`` for DDP)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        drop_last=len(dataset) >= batch_size,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
