"""``worldfm model info CONFIG``, ``worldfm model optimise DIR`` and ``worldfm import-published``.

``model info`` prints what a frame-model config costs before anything is trained: the
parameter count, tokens per forward, FLOPs per sampler step and the per-frame FLOPs of the
1- and 2-step distilled samplers. Counts run on the meta device, so even the published
``xl`` config is instant and allocates no weights.

``model optimise`` brings an older exported folder's graphs up to date (static batch 1).

``import-published`` turns the published WorldFM checkpoints and VAE into a model folder
``worldfm serve --model`` takes (``models.published``; docs/published.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``model info`` to the ``worldfm`` command."""
    model = subparsers.add_parser("model", help="inspect frame-model configs")
    actions = model.add_subparsers(dest="model_command", metavar="ACTION")
    model.set_defaults(func=lambda args: _usage(model))

    info = actions.add_parser("info", help="params, tokens and FLOPs per step of a model config")
    info.add_argument("config", help="config name: tiny, demo or xl")
    info.set_defaults(func=run_info)

    optimise = actions.add_parser(
        "optimise",
        help="give an older exported model folder static batch-1 graphs (seconds faster to load)",
        description="Rewrite the graphs of a model folder exported before graphs had a static batch: the same "
        "computation with its shape arithmetic folded, checked against the originals before anything is replaced.",
    )
    optimise.add_argument("folder", type=Path, help="exported model folder (manifest.json + ONNX graphs)")
    optimise.set_defaults(func=run_optimise)

    imp = subparsers.add_parser(
        "import-published",
        help="published WorldFM checkpoints + VAE -> a servable model folder",
        description="Loads worldfm_1-step.pth / worldfm_2-step.pth and the release's diffusers vae/ folder, checks "
        "every model tensor, and exports the ONNX model folder `worldfm serve --model` takes (anchors rendered the "
        "release's way). Says what it needs (disk, memory, time) first and refuses when the machine lacks it. "
        "See docs/published.md.",
    )
    imp.add_argument("--checkpoint", action="append", required=True, metavar="[STEPS=]PATH",
                     help="a published checkpoint; the step count comes from its name (worldfm_2-step.pth) or "
                          "STEPS=PATH. Repeat for both (each becomes the generator of its own step count)")
    imp.add_argument("--vae", type=Path, required=True, help="the release's vae/ folder (config.json + "
                     "diffusion_pytorch_model.safetensors)")
    imp.add_argument("--out", type=Path, required=True, help="model folder to write (an earlier export there is replaced)")
    imp.add_argument("--fp16", action="store_true", help="also write fp16 generator graphs (what the server runs on CUDA)")
    imp.add_argument("--name", default=None, help="model name in the manifest (default: the --out folder's name)")
    imp.add_argument("--image-size", type=int, default=512, help="frame size in pixels (default 512, the release's)")
    imp.add_argument("--trust-pickle", action="store_true",
                     help="unpickle any object in the checkpoints (plain torch.load, as the release does); only for "
                          "files from a source you trust. Without it, objects other than tensors, numbers, numpy "
                          "values and plain containers are refused by name")
    imp.add_argument("--dry-run", action="store_true", help="read the checkpoints and print what the import needs; "
                     "write nothing")
    imp.set_defaults(func=run_import_published)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_optimise(args: argparse.Namespace) -> int:
    """Optimise ``args.folder`` in place; exit 2 with the reason when it is not a model folder."""
    from models.export import ExportError, optimise_folder
    from python_bridge.engine import Manifest, ModelFolderError

    try:
        Manifest.load(args.folder)  # a readable folder whose files match their sha256
        errors = optimise_folder(args.folder)
    except (ModelFolderError, ExportError, OSError) as exc:
        print(f"worldfm model optimise: {exc}", file=sys.stderr)
        return 2
    if errors:
        print(f"optimised {args.folder}; max |new - original| per graph: "
              + ", ".join(f"{k} {v:.2g}" for k, v in errors.items()))
    else:
        print(f"{args.folder} already has static batch-1 graphs")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print the figures of ``args.config``; exit 1 with the known names on a bad name."""
    from models.dit import CONFIGS, build_model, flops_per_step, get_config

    if args.config not in CONFIGS:
        print(f"worldfm model info: unknown config {args.config!r}; choose one of {', '.join(CONFIGS)}", file=sys.stderr)
        return 1
    config = get_config(args.config)
    params = sum(p.numel() for p in build_model(config, device="meta").parameters())
    flops = flops_per_step(config)
    grid = config.latent_size // config.patch_size
    switches = [name for name in ("prope", "plucker", "anchor_mask_channel", "ref_isolated", "learn_sigma") if getattr(config, name)]
    print(f"config        {config.name}")
    print(f"image         {config.image_size}x{config.image_size} px -> latent {config.latent_channels}x{config.latent_size}x{config.latent_size} "
          f"(autoencoder /{config.vae_downsample})")
    print(f"backbone      depth {config.depth}, width {config.hidden_size}, {config.num_heads} heads of {config.head_dim}, patch {config.patch_size}")
    print(f"conditioning  {', '.join(switches) or 'none'}")
    print(f"parameters    {params:,} ({params / 1e6:.2f} M)")
    print(f"tokens        {config.tokens} (3 views x {grid}x{grid})")
    print(f"FLOPs/step    {flops / 1e9:.3f} G")
    print(f"FLOPs/frame   {flops / 1e9:.3f} G (1-step), {2 * flops / 1e9:.3f} G (2-step)")
    if config.ref_isolated:
        cached = flops_per_step(config, cached_reference=True)
        print(f"cached ref    {cached / 1e9:.3f} G/step with the reference's keys/values cached (x{flops / cached:.2f} fewer)")
    return 0


def run_import_published(args: argparse.Namespace) -> int:
    """Plan, check resources, import; exit 2 with the reason on bad input or a refusal."""
    from models.checkpoints import CheckpointError
    from models.published import (
        ImportRefused,
        check_resources,
        folder_bytes,
        import_published,
        parse_checkpoint_arg,
        plan_import,
    )

    try:
        checkpoints: dict[int, Path] = {}
        for text in args.checkpoint:
            steps, path = parse_checkpoint_arg(text)
            if steps in checkpoints:
                raise CheckpointError(f"two checkpoints for {steps} steps: {checkpoints[steps]} and {path}")
            checkpoints[steps] = path
        plan = plan_import(checkpoints, args.vae, args.out, args.fp16, args.image_size, args.trust_pickle)
        print(plan.describe(), flush=True)
        if args.dry_run:
            return 0
        check_resources(plan)
        errors = import_published(plan, args.name)
    except (CheckpointError, ImportRefused, FileNotFoundError, ValueError) as exc:
        print(f"worldfm import-published: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({folder_bytes(args.out) / 1024**3:.2f} GB); ONNX vs PyTorch max abs error "
          + ", ".join(f"{g} {e:.2g}" for g, e in errors.items()))
    print(f"serve it: worldfm serve --model {args.out}" + (" --provider cuda" if args.fp16 else ""))
    return 0
