"""``worldfm train-autoencoder``, ``train``, ``distill``, ``export``, ``eval``: the model stages.

These commands wire the packages: scenes are read from dataset folders with
``datagen.dataset`` and handed to ``models`` (which never imports ``datagen``). Heavy
imports stay inside the handlers so ``worldfm --help`` stays fast. docs/training.md
walks through the stages; models/weights/demo-256/MODEL_CARD.md has the exact commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.dit import DiTConfig

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
    from models.train_autoencoder import (
        AutoencoderTrainConfig,
        images_to_tensor,
        reconstruction_psnr,
        train_autoencoder,
    )

    _set_threads(args.threads)
    scenes = load_scenes(args.data)
    images = [f.rgb for s in scenes for f in s.frames]
    config = AutoencoderTrainConfig(kind=args.kind, latent_channels=args.latent_channels, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
                                    lr=args.lr, seed=args.seed, save_every=args.save_every)
    vae = train_autoencoder(images, args.out, config, device=args.device)
    if args.val_data:
        held_out = [f.rgb for s in load_scenes(args.val_data) for f in s.frames]
        psnr = reconstruction_psnr(vae, images_to_tensor(held_out))
        print(f"reconstruction PSNR on {len(held_out)} held-out frames: {psnr:.2f} dB")
    print(f"autoencoder -> {Path(args.out) / 'autoencoder'}")
    return 0


def run_train_decoder(args: argparse.Namespace) -> int:
    from models.autoencoder import load_autoencoder
    from models.train_autoencoder import DecoderTrainConfig, images_to_tensor, reconstruction_psnr, train_fast_decoder

    _set_threads(args.threads)
    images = [f.rgb for s in load_scenes(args.data) for f in s.frames]
    config = DecoderTrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                                seed=args.seed, save_every=args.save_every)
    decoder = train_fast_decoder(images, args.autoencoder, args.out, config, device=args.device)
    if args.val_data:
        held_out = images_to_tensor([f.rgb for s in load_scenes(args.val_data) for f in s.frames])
        vae = load_autoencoder(args.autoencoder)
        print(f"reconstruction PSNR on {len(held_out)} held-out frames: "
              f"{reconstruction_psnr(vae, held_out, decoder=decoder):.2f} dB with the fast decoder, "
              f"{reconstruction_psnr(vae, held_out):.2f} dB with the autoencoder's own")
    print(f"fast decoder -> {Path(args.out) / 'fast_decoder'}")
    return 0


def _pair_datasets(args: argparse.Namespace, encoder, model_config: DiTConfig):
    """(training PairDataset, validation batch or None) from --data / --val-data, drawn for a
    model of ``model_config`` (``models.dit.DiTConfig``: its image size and anchor input)."""
    from torch.utils.data import default_collate

    from models.pairs import PairConfig, PairDataset

    config = PairConfig(image_size=model_config.image_size, seed=args.seed, anchor_style=args.anchor,
                        anchor_filled=model_config.anchor_filled)
    cache = args.cache or Path(args.out) / "latent_cache"
    train = PairDataset(load_scenes(args.data), encoder, config, cache, progress=True)
    val = None
    if args.val_data:
        held_out = PairDataset(load_scenes(args.val_data, limit=2), encoder, config, cache)
        val = default_collate([held_out[i] for i in range(0, len(held_out), max(1, len(held_out) // 4))][:4])
    return train, val


def run_train_anchor_decoder(args: argparse.Namespace) -> int:
    from models.train_autoencoder import (
        AnchorDecoderTrainConfig,
        anchor_decoder_psnr,
        anchor_decoder_samples,
        train_anchor_decoder,
    )

    _set_threads(args.threads)
    samples = anchor_decoder_samples(load_scenes(args.data), args.model, seed=args.seed, threads=args.threads)
    config = AnchorDecoderTrainConfig(steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
                                      seed=args.seed, save_every=args.save_every, learn_covered=args.learn_covered)
    decoder = train_anchor_decoder(samples, args.fast_decoder, args.autoencoder, args.out, config, device=args.device)
    if args.val_data:
        held_out = anchor_decoder_samples(load_scenes(args.val_data), args.model, seed=args.seed + 1,
                                          threads=args.threads)
        ours, base = anchor_decoder_psnr(decoder, held_out)
        print(f"held-out PSNR ({len(held_out.latents)} generated latents): {ours:.2f} dB with the anchor decoder, "
              f"{base:.2f} dB for the anchor with push-pull hole filling")
    print(f"anchor decoder -> {Path(args.out) / 'anchor_decoder'}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    import json

    from models.autoencoder import load_codec
    from models.dit import get_config
    from models.train import TrainConfig, train

    _set_threads(args.threads)
    overrides = json.loads(args.model_overrides) if args.model_overrides else {}
    model_cfg = get_config(args.model, **overrides)
    encoder, decoder = load_codec(args.autoencoder)
    dataset, val = _pair_datasets(args, encoder, model_cfg)
    config = TrainConfig(model=args.model, model_overrides=overrides, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, ema_decay=args.ema_decay, cond_dropout=args.cond_dropout, workers=args.workers,
                         seed=args.seed, save_every=args.save_every, val_every=args.val_every,
                         pixart_init=str(args.pixart_init) if args.pixart_init else None)
    train(dataset, args.out, config, val_batch=val, decoder=decoder, device=args.device)
    print(f"teacher -> {Path(args.out) / 'teacher.safetensors'}")
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from models.autoencoder import load_codec
    from models.checkpoints import load_model
    from models.distill import DistillConfig, distill

    _set_threads(args.threads)
    teacher = load_model(args.teacher)
    encoder, decoder = load_codec(args.autoencoder)
    dataset, val = _pair_datasets(args, encoder, teacher.config)
    config = DistillConfig(steps=args.steps, batch_size=args.batch_size, generator_lr=args.generator_lr,
                           critic_lr=args.critic_lr, critic_updates=args.critic_updates,
                           generator_steps=tuple(args.generator_steps), guidance_scale=args.guidance_scale,
                           regression_weight=args.regression_weight,
                           data_regression_weight=args.data_regression_weight, hole_weight=args.hole_weight,
                           gan_weight=args.gan_weight, gan_critic_weight=args.gan_critic_weight,
                           init_from_teacher_x0=args.init_from_teacher_x0,
                           pool_size=args.pool_size,
                           teacher_steps=args.teacher_steps, seed=args.seed, save_every=args.save_every,
                           workers=args.workers)
    distill(teacher, dataset, args.out, config, val_batch=val, decoder=decoder, device=args.device)
    print(f"generators -> {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from models.autoencoder import load_autoencoder, load_fast_decoder
    from models.checkpoints import load_model
    from models.export import export_model

    generators = {}
    for s in args.steps:
        path = args.generator / f"generator_{s}step.safetensors" if args.generator.is_dir() else args.generator
        generators[s] = load_model(path)
    decoder = load_fast_decoder(args.fast_decoder, args.autoencoder) if args.fast_decoder else None
    fp16: bool | list[int] = False
    if args.fp16 is not None:
        fp16 = args.fp16 or True  # a bare --fp16: every step count
    errors = export_model(generators, load_autoencoder(args.autoencoder), args.out, args.name, decoder=decoder,
                          fp16=fp16)
    print(f"exported {args.name} -> {args.out}; ONNX vs PyTorch max abs error {errors}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json

    from models.checkpoints import load_model
    from models.evaluate import OnnxRunner, anchor_report, evaluate, side_by_side

    if min(args.anchor_minify) < 1:
        print(f"error: --anchor-minify factors must be >= 1; got {args.anchor_minify}", file=sys.stderr)
        return 2
    _set_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    sets = {"in family": load_scenes(args.data, limit=args.scenes)}
    if args.ood_data:
        sets["out of family"] = load_scenes(args.ood_data, limit=args.scenes)
    anchors = anchor_report(sets, args.anchor_styles, window=args.window, stride=args.stride,
                            minify=args.anchor_minify)
    (args.out / "anchors.md").write_text(anchors.markdown() + "\n")
    (args.out / "anchors.json").write_text(json.dumps(anchors.to_json(), indent=2) + "\n")
    print(anchors.markdown())
    if args.model is None:
        return 0
    ablations, latent_decoder = {}, None
    for spec in args.ablation:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"worldfm eval: --ablation takes NAME=CHECKPOINT, got {spec!r}")
        ablations[name] = load_model(path)
    if ablations:
        if args.autoencoder is None:
            raise SystemExit("worldfm eval: --ablation needs --autoencoder (its decoder decodes the ablations)")
        from models.autoencoder import load_codec

        latent_decoder = load_codec(args.autoencoder)[1]
    runner = OnnxRunner(args.model, threads=args.threads)
    teacher = load_model(args.teacher) if args.teacher else None
    style = args.anchor or runner.manifest.get("anchor_style")
    # Out of family first: it is the figure that says whether the model generalises.
    results = {}
    for name in sorted(sets, key=lambda n: n != "out of family"):
        strip = args.out / ("strip.png" if len(sets) == 1 else f"strip_{name.replace(' ', '_')}.png")
        results[name] = evaluate(runner, sets[name], teacher=teacher, teacher_steps=args.teacher_steps,
                                 window=args.window, stride=args.stride, seed=args.seed, strip=strip,
                                 ablations=ablations, latent_decoder=latent_decoder, anchor_style=style,
                                 fill_guard=args.fill_guard)
    if len(results) > 1:
        table, report = side_by_side(results), {name: r.to_json() for name, r in results.items()}
    else:
        table, report = results["in family"].markdown(), results["in family"].to_json()
    (args.out / "eval.md").write_text(table + "\n")
    (args.out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table)
    return 0


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="training dataset folders")
    parser.add_argument("--val-data", type=Path, nargs="*", default=None, help="held-out scenes for validation")
    parser.add_argument("--autoencoder", type=Path, required=True, help="autoencoder folder (diffusers format)")
    parser.add_argument("--cache", type=Path, default=None, help="latent cache folder (default OUT/latent_cache)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per step and process (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--save-every", type=int, default=100, help="checkpoint interval in steps (default 100)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's choice; 1 is fastest on a busy machine)")
    parser.add_argument("--anchor", default="mesh", metavar="STYLE",
                        help="anchor style of the training pairs: mesh, points, ... (default mesh; docs/anchor.md); "
                             "export the model with the same --anchor-style")


def _add_crop_training_args(parser: argparse.ArgumentParser, steps: int, batch_size: int, crop: int, lr: float,
                            crop_help: str = "training crop size in pixels") -> None:
    """The optimisation arguments of the crop-trained networks (autoencoder, fast and anchor decoders)."""
    parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"crops per step (default {batch_size})")
    parser.add_argument("--crop", type=int, default=crop, help=f"{crop_help} (default {crop})")
    parser.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--save-every", type=int, default=100, help="checkpoint interval in steps (default 100)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the libraries' choice)")


def register(subparsers: argparse._SubParsersAction) -> None:
    ae = subparsers.add_parser("train-autoencoder", help="train the 16x demo autoencoder on dataset frames",
                               description="Stage 1 of the demo model: a small autoencoder trained from scratch on "
                                           "random crops of dataset frames; resumable (state in --out).")
    ae.add_argument("--data", type=Path, nargs="+", required=True, help="dataset folders (scene or folder of scenes)")
    ae.add_argument("--val-data", type=Path, nargs="*", default=None, help="held-out scenes for reconstruction PSNR")
    ae.add_argument("--out", type=Path, required=True, help="run folder (state.safetensors, autoencoder/)")
    # models.autoencoder.DEMO_KINDS, spelled out so `worldfm --help` does not import torch
    ae.add_argument("--kind", choices=["tiny16", "tiny", "kl"], default="kl", help="architecture (default kl)")
    ae.add_argument("--latent-channels", type=int, default=8,
                    help="channels per 16x16-pixel latent cell (default 8); the DiT then needs "
                         "--model-overrides '{\"latent_channels\": N}'")
    _add_crop_training_args(ae, steps=2000, batch_size=16, crop=64, lr=1e-3)
    ae.set_defaults(func=run_train_autoencoder)

    dec = subparsers.add_parser("train-decoder", help="train a fast decoder for a trained autoencoder's latents",
                                description="Optional: a narrow decoder (TAESD-style, ~5x faster on CPU) fitted to "
                                            "the frames through the frozen encoder; the latent space, and so the DiT, "
                                            "stays the same. Resumable (state in --out). Use with export "
                                            "--fast-decoder.")
    dec.add_argument("--data", type=Path, nargs="+", required=True, help="dataset folders (scene or folder of scenes)")
    dec.add_argument("--val-data", type=Path, nargs="*", default=None, help="held-out scenes for reconstruction PSNR")
    dec.add_argument("--autoencoder", type=Path, required=True, help="the trained autoencoder folder (kept frozen)")
    dec.add_argument("--out", type=Path, required=True, help="run folder (state.safetensors, fast_decoder/)")
    _add_crop_training_args(dec, steps=3000, batch_size=16, crop=128, lr=2e-3,
                            crop_help="crop size in pixels, a multiple of the latent cell")
    dec.set_defaults(func=run_train_decoder)

    ad = subparsers.add_parser("train-anchor-decoder", help="train a decoder that also sees the anchor image",
                               description="Optional, after export: an AnchorDecoder (fast decoder + full-resolution "
                                           "head blending the anchor rendering with the decoded latent), trained on "
                                           "the exported generator's latents for held-out-style targets of --data. "
                                           "Use with export --fast-decoder. See docs/model.md.")
    ad.add_argument("--model", type=Path, required=True, help="exported model folder (its encoder and generators)")
    ad.add_argument("--fast-decoder", type=Path, required=True, help="fast_decoder folder to start from")
    ad.add_argument("--autoencoder", type=Path, required=True, help="the autoencoder the fast decoder belongs to")
    ad.add_argument("--data", type=Path, nargs="+", required=True, help="training dataset folders")
    ad.add_argument("--val-data", type=Path, nargs="*", default=None, help="held-out scenes for a PSNR check")
    ad.add_argument("--out", type=Path, required=True, help="run folder (state.safetensors, anchor_decoder/)")
    _add_crop_training_args(ad, steps=2500, batch_size=8, crop=128, lr=1e-3,
                            crop_help="crop size in pixels, a multiple of the latent cell")
    ad.add_argument("--learn-covered", action="store_true",
                    help="train the blend weight on covered pixels too (the shipped demo's recipe); the saved "
                         "decoder pins them to the anchor either way")
    ad.set_defaults(func=run_train_anchor_decoder)

    tr = subparsers.add_parser("train", help="stage 2: train the frame model (teacher) by denoising",
                               description="Diffusion training on (reference, target, anchor) pairs; resumable, "
                                           "DDP under torchrun. See docs/training.md.")
    _add_data_args(tr)
    tr.add_argument("--out", type=Path, required=True, help="run folder (state, teacher.safetensors, log, val/)")
    tr.add_argument("--model", default="demo", help="model config name (tiny, demo, xl; default demo)")
    tr.add_argument("--model-overrides", default=None, help='JSON of DiTConfig fields to change, e.g. \'{"depth": 4}\'')
    tr.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    tr.add_argument("--lr", type=float, default=3e-4, help="learning rate (default 3e-4)")
    tr.add_argument("--ema-decay", type=float, default=0.995, help="EMA decay (default 0.995)")
    tr.add_argument("--cond-dropout", type=float, default=0.1, help="condition dropout probability (default 0.1)")
    tr.add_argument("--val-every", type=int, default=500, help="validation interval in steps (default 500)")
    tr.add_argument("--pixart-init", type=Path, default=None, help="PixArt-alpha/Sigma XL/2 weights to start from")
    tr.set_defaults(func=run_train)

    di = subparsers.add_parser("distill", help="stage 3: DMD2 distillation into 1- and 2-step generators",
                               description="Generator and critic initialised from the teacher; distribution matching "
                                           "+ optional regression on teacher ODE pairs. See docs/training.md.")
    _add_data_args(di)
    di.add_argument("--teacher", type=Path, required=True, help="teacher.safetensors from `worldfm train`")
    di.add_argument("--out", type=Path, required=True, help="run folder (generator_Nstep.safetensors, state, log)")
    di.add_argument("--steps", type=int, default=1000, help="generator updates (default 1000)")
    di.add_argument("--generator-lr", type=float, default=5e-5, help="generator learning rate (default 5e-5)")
    di.add_argument("--critic-lr", type=float, default=1e-4, help="critic learning rate (default 1e-4)")
    di.add_argument("--critic-updates", type=int, default=2, help="critic updates per generator update (default 2)")
    di.add_argument("--generator-steps", type=int, nargs="+", default=[1, 2],
                    help="step counts the one generator is trained for (default 1 2)")
    di.add_argument("--guidance-scale", type=float, default=1.0, help="teacher guidance in the real score (default 1)")
    di.add_argument("--regression-weight", type=float, default=1.0,
                    help="weight of the regression loss on teacher ODE pairs; 0 = pure DMD2 (default 1)")
    di.add_argument("--data-regression-weight", type=float, default=0.0,
                    help="weight of ||G(z) - ground truth||^2 (ours, for tiny budgets; default 0 = off)")
    di.add_argument("--hole-weight", type=float, default=0.0,
                    help="extra weight of the data regression in latent cells the cloud leaves empty, "
                         "per unit of empty share (default 0 = uniform)")
    di.add_argument("--gan-weight", type=float, default=0.0,
                    help="weight of DMD2's GAN term in the generator loss (classifier head on the critic; "
                         "default 0 = off)")
    di.add_argument("--gan-critic-weight", type=float, default=1e-2,
                    help="weight of the classifier loss in the critic's loss when --gan-weight > 0 (default 0.01)")
    di.add_argument("--init-from-teacher-x0", action="store_true",
                    help="start the generator at the teacher's x0 estimate (v from eps) instead of a plain copy "
                         "(first step ~ -z); measured to diverge at the default learning rates (docs/training.md)")
    di.add_argument("--pool-size", type=int, default=256, help="teacher ODE pairs (default 256)")
    di.add_argument("--teacher-steps", type=int, default=10, help="DPM-Solver++ steps of the teacher (default 10)")
    di.set_defaults(func=run_distill)

    ev = subparsers.add_parser("eval", help="evaluate an exported model on held-out scenes (table + image strip)",
                               description="PSNR/SSIM vs ground truth for the generator, teacher, baselines and "
                                           "ablations, plus multi-view consistency; writes eval.md/eval.json/"
                                           "strip.png.")
    ev.add_argument("--model", type=Path, default=None,
                    help="exported model folder (manifest.json); without it only the anchor styles are scored")
    ev.add_argument("--data", type=Path, nargs="+", required=True, help="held-out dataset folders (in family)")
    ev.add_argument("--out-of-family", "--ood-data", dest="ood_data", type=Path, nargs="*", default=None,
                    help="held-out scenes of families no training stage saw (`worldfm datagen procedural --kind "
                         "held-out`): anchors and the model are scored on both sets, these columns first")
    ev.add_argument("--anchor", default=None, metavar="STYLE",
                    help="anchor style the model is run with (default: its manifest's, else mesh; docs/anchor.md)")
    ev.add_argument("--anchor-styles", nargs="+", default=None, metavar="STYLE",
                    help="anchor styles whose raw anchors are scored (default: every registered style)")
    ev.add_argument("--anchor-minify", type=int, nargs="+", default=[1, 4], metavar="F",
                    help="also score the raw anchors at 1/F of the targets' size, against the truth averaged over "
                         "each pixel (textures seen from afar: the anti-aliasing check; default 1 4)")
    ev.add_argument("--teacher", type=Path, default=None, help="teacher.safetensors to score the multi-step teacher")
    ev.add_argument("--teacher-steps", type=int, default=10, help="teacher DPM-Solver++ steps (default 10)")
    ev.add_argument("--ablation", action="append", default=[], metavar="NAME=CHECKPOINT",
                    help="a retrained-ablation teacher (repeatable), sampled like --teacher and decoded by "
                         "--autoencoder's decoder; row 'ablation: NAME' (docs/training.md)")
    ev.add_argument("--autoencoder", type=Path, default=None, help="autoencoder folder, to decode --ablation rows")
    ev.add_argument("--out", type=Path, required=True, help="output folder")
    ev.add_argument("--scenes", type=int, default=None, help="use only the first N scenes")
    ev.add_argument("--window", type=int, default=4, help="views left out of the cloud per window (default 4)")
    ev.add_argument("--stride", type=int, default=1, help="evaluate every N-th view of a window (default 1)")
    ev.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    ev.add_argument("--no-fill-guard", dest="fill_guard", action="store_false",
                    help="leave out the row 'generator 1 step, fill guard' (the server's per-scene choice between "
                         "the model and anchor + hole filling, measured on views the cloud holds; models/fill_guard.py)")
    ev.add_argument("--threads", type=int, default=None, help="CPU threads (default: library choice)")
    ev.set_defaults(func=run_eval)

    ex = subparsers.add_parser("export", help="export distilled generators + autoencoder to an ONNX model folder",
                               description="Writes manifest.json and encoder/generator_N/decoder ONNX graphs; "
                                           "fails unless ONNX Runtime matches PyTorch.")
    ex.add_argument("--generator", type=Path, required=True,
                    help="distill run folder (generator_Nstep.safetensors) or one model .safetensors for all steps")
    ex.add_argument("--autoencoder", type=Path, required=True, help="autoencoder folder (diffusers format)")
    ex.add_argument("--fast-decoder", type=Path, default=None,
                    help="fast_decoder or anchor_decoder folder (`worldfm train-decoder` / `train-anchor-decoder`) "
                         "to export instead of the autoencoder's own decoder")
    ex.add_argument("--out", type=Path, required=True, help="output model folder (replaced)")
    ex.add_argument("--name", default="demo-256", help="model name in the manifest (default demo-256)")
    ex.add_argument("--steps", type=int, nargs="+", default=[1, 2], help="generator step counts (default 1 2)")
    ex.add_argument("--fp16", type=int, nargs="*", default=None, metavar="STEPS",
                    help="also write fp16 generator graphs, which the server runs on CUDA: for every step count, "
                         "or for the ones listed (docs/training.md)")
    ex.set_defaults(func=run_export)
