"""``worldfm train-autoencoder``, ``train``, ``distill``, ``export``, ``eval``: the model stages.

These commands wire the packages: scenes are read from dataset folders with
``datagen.dataset`` and handed to ``models`` (which never imports ``datagen``). Heavy
imports stay inside the handlers so ``worldfm --help`` stays fast. docs/training.md
walks through the stages; models/weights/demo-256/MODEL_CARD.md has the exact commands.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def load_scenes(roots: list[Path], limit: int | None = None) -> list:
    """Every scene under the dataset ``roots`` (a scene folder or a folder of scene folders)."""
    from datagen.dataset import find_scenes, read_scene

    paths = []
    for root in roots:
        found = [root] if (root / "transforms.json").is_file() else find_scenes(root)
        if not found:
            raise SystemExit(f"{root} holds no scene folder (no transforms.json); generate data with `worldfm datagen`")
        paths += found
    paths = paths[:limit] if limit else paths
    log.info("reading %d scenes", len(paths))
    return [read_scene(p) for p in paths]


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def run_train_autoencoder(args: argparse.Namespace) -> int:
    from models.train_autoencoder import AutoencoderTrainConfig, images_to_tensor, reconstruction_psnr, train_autoencoder

    _set_threads(args.threads)
    scenes = load_scenes(args.data)
    images = [f.rgb for s in scenes for f in s.frames]
    config = AutoencoderTrainConfig(kind=args.kind, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
                                    lr=args.lr, seed=args.seed, save_every=args.save_every)
    vae = train_autoencoder(images, args.out, config, device=args.device)
    if args.val_data:
        held_out = [f.rgb for s in load_scenes(args.val_data) for f in s.frames]
        psnr = reconstruction_psnr(vae, images_to_tensor(held_out))
        print(f"reconstruction PSNR on {len(held_out)} held-out frames: {psnr:.2f} dB")
    print(f"autoencoder -> {Path(args.out) / 'autoencoder'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    ae = subparsers.add_parser("train-autoencoder", help="train the 16x demo autoencoder on dataset frames",
                               description="Stage 1 of the demo model: a small autoencoder trained from scratch on "
                                           "random crops of dataset frames; resumable (state in --out).")
    ae.add_argument("--data", type=Path, nargs="+", required=True, help="dataset folders (scene or folder of scenes)")
    ae.add_argument("--val-data", type=Path, nargs="*", default=None, help="held-out scenes for reconstruction PSNR")
    ae.add_argument("--out", type=Path, required=True, help="run folder (state.safetensors, autoencoder/)")
    ae.add_argument("--kind", choices=["kl", "tiny"], default="kl", help="architecture (default kl)")
    ae.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    ae.add_argument("--batch-size", type=int, default=16, help="crops per step (default 16)")
    ae.add_argument("--crop", type=int, default=64, help="training crop size in pixels (default 64)")
    ae.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    ae.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    ae.add_argument("--save-every", type=int, default=100, help="checkpoint interval in steps (default 100)")
    ae.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ae.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ae.set_defaults(func=run_train_autoencoder)
