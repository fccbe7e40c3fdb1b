"""Checkpoint I/O: our safetensors files, the published WorldFM weights, PixArt-alpha/Sigma weights.

* ``save_model`` / ``load_model``: our format, one ``.safetensors`` file whose metadata
  holds the ``DiTConfig`` as JSON, so a file is self-describing and loads strictly.
* ``load_published_checkpoint``: ``worldfm_1-step.pth`` / ``worldfm_2-step.pth`` into the
  ``xl`` config (or the reduced XL :func:`published_config` reads off the file). It takes
  what the release's own loader takes -- the weights under ``state_dict`` (the release's
  choice), ``model`` or an EMA entry, or a flat dict -- ignores entries that are not model
  weights (EMA copy, optimizer, step counters, training arguments) with one log line naming
  them, and is strict about the model itself: a missing or mis-shaped tensor is refused by
  name. ``pos_embed`` is dropped (recomputed, as the published loader does) and the Plücker
  projector may be absent when the config does not use it.
* ``load_pixart_weights``: PixArt-alpha/Sigma XL/2 weights (original ``.pth`` layout or the
  diffusers ``PixArtTransformer2DModel`` layout) to initialise stage-2 training; returns a
  report of what was loaded, adapted, ignored and left at initialisation.

``.pth`` files are unpickled by :func:`load_pickle`: torch's ``weights_only`` unpickler,
which builds tensors and plain data but runs no code from the file, widened to the plain
objects training scripts store beside weights (numpy scalars and arrays,
``argparse.Namespace``). Anything else is refused by name unless the caller opts in with
``trust_pickle`` (``--trust-pickle``), the plain ``torch.load`` the release uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from models.dit import DiTConfig, WorldFMDiT, build_model, xl

log = logging.getLogger(__name__)

FORMAT = "worldfm-dit"
_SHOW = 8  # keys listed per category in error messages


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def _safe_globals() -> list:
    """Pickled globals :func:`load_pickle` builds beyond torch's own ``weights_only`` set.

    Plain data only: ``argparse.Namespace`` (a bag of attributes) and numpy scalars, arrays
    and dtypes, under the module names numpy 1.x (``numpy.core``) and 2.x (``numpy._core``)
    pickle them with. None of them runs code from the file when built.
    """
    multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray
    allowed: list = [argparse.Namespace, np.ndarray, np.dtype]
    allowed += sorted({type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"}, key=str)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    return allowed


def _unsafe_globals(path: Path) -> list[str]:
    """Names of the pickled globals in ``path`` that :func:`load_pickle` refuses (best effort)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (RuntimeError, ValueError, OSError, zipfile.BadZipFile, pickle.UnpicklingError):
        return []  # not a zip-format checkpoint: the caller's message stands without names
    allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in _safe_globals()}
    return [n for n in names if n not in allowed]


def load_pickle(path: str | Path, trust_pickle: bool = False, mmap: bool = False) -> object:
    """What a ``.pth``/``.pt``/``.bin`` file holds, built without running code from it.

    Tensors, plain containers and numbers, numpy scalars/arrays and ``argparse.Namespace``
    are built (:func:`_safe_globals`); any other pickled object -- a class or function of
    the training code, which unpickling would have to import and call -- is refused with its
    name. ``trust_pickle`` unpickles everything, as the release's plain ``torch.load`` does:
    only for a file from a source you trust. ``mmap`` maps tensor data from the file instead
    of reading it (zip-format files), so shapes can be inspected before memory is committed.
    Raises ``CheckpointError`` on a missing, truncated or refused file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    mmap = mmap and zipfile.is_zipfile(path)  # the legacy (pre-1.6) format cannot be mapped
    try:
        if trust_pickle:
            log.warning("unpickling %s with --trust-pickle: code stored in the file may run", path)
            return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        unsafe = _unsafe_globals(path)
        if unsafe or "Unsupported global" in str(exc) or "weights_only" in str(exc).lower():
            raise CheckpointError(
                f"{path} holds pickled objects the safe loader does not build "
                f"({', '.join(unsafe) or 'see the unpickler message below'}): building them could run code from the "
                "file. If you trust its source, load it with --trust-pickle (trust_pickle=True)."
                + ("" if unsafe else f"\n{str(exc).splitlines()[-1]}")
            ) from None
        raise CheckpointError(f"could not read checkpoint {path}: {exc}. Is the file complete? (re-download it)") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"could not read checkpoint {path}: {exc}. Is the file complete? (re-download it)"
        ) from exc


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file, unwrapped from a
    ``{"state_dict": ...}`` container if present. Raises ``CheckpointError`` on a missing,
    truncated or non-tensor file (``.pth`` files are read by :func:`load_pickle`)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        state = load_pickle(path, trust_pickle)
    elif not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    else:
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"could not read checkpoint {path}: {exc}. Is the file complete?") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a flat dict of tensors (or one under 'state_dict')")
    return state


def load_strict(
    model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, optional: tuple[str, ...] = ()
) -> None:
    """Copy ``state`` into ``model`` requiring identical keys and shapes.

    Keys starting with a prefix in ``optional`` may be missing from ``state`` (they keep
    their initial values and a warning is logged); anything else missing, unexpected or of
    another shape raises ``CheckpointError`` listing the offending keys.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    tolerated = [k for k in missing if k.startswith(optional)]
    missing = [k for k in missing if k not in tolerated]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_describe(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {_describe(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the model config: " + "; ".join(problems)
            + ". Pick the config the checkpoint was trained with (e.g. depth, hidden size, in-channels)."
        )
    if tolerated:
        log.warning("%s lacks %d keys of unused modules (%s); they keep their initial values",
                    source, len(tolerated), _describe(tolerated))
    model.load_state_dict(state, strict=False)


def save_model(model: WorldFMDiT, path: str | Path) -> None:
    """Write ``model``'s weights and config to one ``.safetensors`` file."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": FORMAT, "config": json.dumps(asdict(model.config))})


def load_model(path: str | Path) -> WorldFMDiT:
    """A model saved with ``save_model``: the config from the file's metadata, weights strictly."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"could not read {path}: {exc}; is it a complete .safetensors file?") from exc
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise CheckpointError(f"{path} is not a {FORMAT} file (no config in its metadata); "
                              "for published weights use load_published_checkpoint")
    model = build_model(DiTConfig(**json.loads(metadata["config"])))
    load_strict(model, read_state_dict(path), str(path))
    return model.eval()


# Where training scripts keep the weights inside a checkpoint dict, in the order looked for.
# ``state_dict`` first: the release's loader takes it, and PixArt's trainer (which the
# release's files follow) stores its EMA copy beside it as ``state_dict_ema``; the release
# runs the non-EMA weights, so EMA entries are used only when nothing else holds weights.
WEIGHT_ENTRIES = ("state_dict", "model", "module", "ema", "state_dict_ema", "model_ema", "ema_state_dict")
_KEY_PREFIXES = ("module.", "model.", "base_model.")  # DDP / wrapper prefixes on every key


@dataclass
class PublishedWeights:
    """The model tensors found in a published-format checkpoint.

    ``entry``: where they were (``"state_dict"``, ``"model/ema"``, or ``""`` for a flat
    dict); ``ignored``: every other entry, name -> short description, for the log line.
    """

    tensors: dict[str, torch.Tensor]
    entry: str
    ignored: dict[str, str] = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


def _summary(value: object) -> str:
    """A few words about a checkpoint entry for the ignored-entries log line."""
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    if isinstance(value, Mapping):
        tensors = sum(isinstance(v, torch.Tensor) for v in value.values())
        return f"dict of {len(value)}" + (f", {tensors} tensors" if tensors else "")
    return type(value).__name__


def find_published_weights(obj: object, source: str) -> PublishedWeights:
    """Pick the model tensors out of an unpickled checkpoint (see ``WEIGHT_ENTRIES``).

    A dict holding tensors is the weights itself; one holding none is searched for the first
    ``WEIGHT_ENTRIES`` entry, repeatedly (``{"model": {"state_dict": ...}}``). Non-tensor
    values beside the tensors and every other entry are set aside in ``ignored``; a prefix
    on every key (``module.`` of DDP, ``model.``) is removed.
    """
    path: list[str] = []
    ignored: dict[str, str] = {}
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in WEIGHT_ENTRIES if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        ignored.update({"/".join([*path, str(k)]): _summary(v) for k, v in obj.items() if k != key})
        path.append(key)
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a dict of model weights")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    ignored.update({"/".join([*path, str(k)]): _summary(v) for k, v in obj.items() if k not in tensors})
    if not tensors:
        raise CheckpointError(
            f"{source} holds no model tensors (entries: {_describe([str(k) for k in obj])}); expected a dict of "
            f"tensors, or one under {', '.join(repr(e) for e in WEIGHT_ENTRIES)}"
        )
    for prefix in _KEY_PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
            break
    return PublishedWeights(tensors, "/".join(path), ignored)


def read_published_weights(path: str | Path, trust_pickle: bool = False) -> PublishedWeights:
    """The model tensors of a published-format ``.pth`` (:func:`find_published_weights`).

    Tensor data is memory-mapped from the file (zip-format checkpoints), so reading shapes
    commits no memory; loading into a model then copies each tensor once.
    """
    return find_published_weights(load_pickle(path, trust_pickle, mmap=True), str(path))


def published_config(weights: PublishedWeights, image_size: int = 512, vae_downsample: int = 8,
                     latent_channels: int = 4) -> DiTConfig:
    """The ``xl`` config with the depth, width and patch read off ``weights`` (a full
    published file gives ``xl()`` itself; a reduced one, e.g. in tests, a reduced XL),
    for ``image_size`` px frames through a ``vae_downsample``x autoencoder.

    Heads keep the XL head size (72). Raises ``CheckpointError`` naming the tensor that
    cannot be read, or the shape that does not fit the published architecture.
    """
    state, head_dim = weights.tensors, xl().head_dim
    embed = state.get("x_embedder.proj.weight")
    if embed is None or embed.ndim != 4:
        raise CheckpointError(
            "missing keys: x_embedder.proj.weight (the patch embedding, shape (width, 4, 2, 2) in the published XL) "
            f"{'is missing' if embed is None else f'has shape {tuple(embed.shape)}'}; is this a WorldFM checkpoint?"
        )
    hidden, in_channels, patch = int(embed.shape[0]), int(embed.shape[1]), int(embed.shape[2])
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not blocks:
        raise CheckpointError("missing keys: blocks.0.* -- the checkpoint holds no transformer blocks")
    if hidden % head_dim:
        raise CheckpointError(f"x_embedder.proj.weight: width {hidden} is not a multiple of the XL head size {head_dim}")
    if in_channels != latent_channels:
        raise CheckpointError(
            f"x_embedder.proj.weight: takes {in_channels} channels but the autoencoder's latent has {latent_channels} "
            "(a mask-channel variant is not what the release ships)"
        )
    if image_size % (vae_downsample * patch):
        raise CheckpointError(f"image size {image_size} is not a multiple of {vae_downsample * patch} (autoencoder x patch)")
    final = state.get("final_layer.linear.weight")
    out_channels = int(final.shape[0]) // patch**2 if final is not None else 2 * in_channels  # missing: refused at load
    return replace(xl(), depth=max(blocks) + 1, hidden_size=hidden, num_heads=hidden // head_dim, patch_size=patch,
                   latent_size=image_size // vae_downsample, vae_downsample=vae_downsample,
                   learn_sigma=out_channels == 2 * in_channels)


def published_model(weights: PublishedWeights, config: DiTConfig, source: str) -> WorldFMDiT:
    """``weights`` in a ``WorldFMDiT`` of ``config``, strictly (see the module docstring).

    Tensors under a module this model does not have (e.g. a critic stored beside the
    generator) are ignored like the release's ``strict=False`` ignores them; all ignored
    entries go in one log line. Within the model's modules, every tensor must be present
    with its shape, and none may be extra (a deeper or wider network).
    """
    if not config.checkpoint_compat:
        raise CheckpointError(f"config {config.name!r} lacks the published modules; use checkpoint_compat=True (e.g. xl())")
    model = build_model(config)
    modules = {name for name, _ in model.named_children()}
    state = {k: v for k, v in weights.tensors.items() if k != "pos_embed"}  # recomputed, as the release does
    foreign = sorted(k for k in state if k.split(".")[0] not in modules)
    ignored = dict(weights.ignored)
    for root in sorted({k.split(".")[0] for k in foreign}):
        count = sum(k.split(".")[0] == root for k in foreign)
        ignored[f"{weights.entry + '/' if weights.entry else ''}{root}.*"] = f"{count} tensors of no module of this model"
    if ignored:
        log.info("%s: model weights from %s; ignored %d entries that are not model weights: %s", source,
                 f"'{weights.entry}'" if weights.entry else "the top level", len(ignored),
                 ", ".join(f"{k} ({v})" for k, v in ignored.items()))
    load_strict(model, {k: v for k, v in state.items() if k not in foreign}, source,
                optional=() if config.plucker else ("plucker_proj.",))
    return model.eval()


def load_published_checkpoint(path: str | Path, config: DiTConfig | None = None,
                              trust_pickle: bool = False) -> WorldFMDiT:
    """The published ``worldfm_{1,2}-step.pth`` as a ``WorldFMDiT`` (``xl()`` unless given).

    Reads as :func:`read_published_weights`, loads as :func:`published_model`: missing,
    unexpected and mis-shaped model tensors are refused by name, other entries ignored
    with one log line. ``trust_pickle``: see :func:`load_pickle`.
    """
    return published_model(read_published_weights(path, trust_pickle), config or xl(), str(path))


# ----------------------------------------------------------------------------- PixArt


def _from_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename diffusers ``PixArtTransformer2DModel`` keys to the original PixArt layout,
    joining the separate q/k/v projections into ``qkv`` / ``kv_linear``."""
    renames = [
        (r"^pos_embed\.proj\.", "x_embedder.proj."),
        (r"^adaln_single\.emb\.timestep_embedder\.linear_1\.", "t_embedder.mlp.0."),
        (r"^adaln_single\.emb\.timestep_embedder\.linear_2\.", "t_embedder.mlp.2."),
        (r"^adaln_single\.linear\.", "t_block.1."),
        (r"^caption_projection\.linear_1\.", "y_embedder.y_proj.fc1."),
        (r"^caption_projection\.linear_2\.", "y_embedder.y_proj.fc2."),
        (r"^transformer_blocks\.(\d+)\.attn1\.to_out\.0\.", r"blocks.\1.attn.proj."),
        (r"^transformer_blocks\.(\d+)\.attn2\.to_q\.", r"blocks.\1.cross_attn.q_linear."),
        (r"^transformer_blocks\.(\d+)\.attn2\.to_out\.0\.", r"blocks.\1.cross_attn.proj."),
        (r"^transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.", r"blocks.\1.mlp.fc1."),
        (r"^transformer_blocks\.(\d+)\.ff\.net\.2\.", r"blocks.\1.mlp.fc2."),
        (r"^transformer_blocks\.(\d+)\.scale_shift_table$", r"blocks.\1.scale_shift_table"),
        (r"^proj_out\.", "final_layer.linear."),
        (r"^scale_shift_table$", "final_layer.scale_shift_table"),
    ]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        joined = re.match(r"^transformer_blocks\.(\d+)\.attn([12])\.to_([qkv])\.(weight|bias)$", key)
        if joined:
            block, attn, which, kind = joined.groups()
            if attn == "1" and which == "q":
                parts = [state[f"transformer_blocks.{block}.attn1.to_{x}.{kind}"] for x in "qkv"]
                out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
            elif attn == "2" and which == "k":
                parts = [state[f"transformer_blocks.{block}.attn2.to_{x}.{kind}"] for x in "kv"]
                out[f"blocks.{block}.cross_attn.kv_linear.{kind}"] = torch.cat(parts, dim=0)
            elif attn == "2" and which == "q":
                out[f"blocks.{block}.cross_attn.q_linear.{kind}"] = value
            continue
        for pattern, repl in renames:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            out[key] = value  # unknown: reported as ignored by the caller
    return out


@dataclass
class LoadReport:
    """What ``load_pixart_weights`` did with each key."""

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)  # e.g. patch embedding widened for the mask channel
    ignored: list[str] = field(default_factory=list)  # in the checkpoint, not used by this model
    kept_init: list[str] = field(default_factory=list)  # new in WorldFM (e.g. Plücker projector)

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)}, adapted {len(self.adapted)} ({_describe(self.adapted)}), "
                f"ignored {len(self.ignored)} ({_describe(self.ignored)}), "
                f"kept at init {len(self.kept_init)} ({_describe(self.kept_init)})")


_NEW_IN_WORLDFM = ("plucker_proj.",)
_PIXART_ONLY = ("pos_embed", "y_embedder.", "csize_embedder.", "ar_embedder.")  # may be dropped when unused


def load_pixart_weights(model: WorldFMDiT, path: str | Path) -> LoadReport:
    """Initialise ``model`` from PixArt-alpha/Sigma weights (a ``.pth``, a ``.safetensors``
    file, or a diffusers folder holding ``transformer/diffusion_pytorch_model*.safetensors``).

    Backbone keys (embedders, ``t_block``, every block's attention/MLP/table, final layer)
    must all be present with matching shapes, else ``CheckpointError``; a patch embedding
    with fewer input channels is widened with zero weights for the extra channels (the
    anchor-mask channel), so the pretrained function is unchanged at initialisation.
    """
    state = _read_pixart(Path(path))
    if any(k.startswith(("transformer_blocks.", "adaln_single.")) for k in state):
        state = _from_diffusers(state)
    report = LoadReport()
    expected = model.state_dict()
    to_load: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for key, target in expected.items():
        if key not in state:
            if key.startswith(_NEW_IN_WORLDFM) or key.startswith("y_embedder.y_embedding"):
                report.kept_init.append(key)
            else:
                problems.append(f"missing {key}")
            continue
        value = state[key]
        if value.shape == target.shape:
            to_load[key] = value
            report.loaded.append(key)
        elif key == "x_embedder.proj.weight" and value.shape[1] < target.shape[1] and value.shape[2:] == target.shape[2:]:
            widened = torch.zeros(target.shape, dtype=value.dtype)
            widened[:, : value.shape[1]] = value
            to_load[key] = widened
            report.adapted.append(key)
        elif key == "y_embedder.y_embedding":
            report.kept_init.append(key)  # null-caption length differs (alpha 120, Sigma 300); never run
        else:
            problems.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target.shape)}")
    report.ignored = [k for k in state if k not in expected]
    unknown = [k for k in report.ignored if not k.startswith(_PIXART_ONLY) and ".cross_attn." not in k]
    if unknown:
        problems.append(f"unexpected keys (not PixArt?): {_describe(unknown)}")
    if problems:
        raise CheckpointError(f"{path} cannot initialise config {model.config.name!r}: {_describe(problems)}")
    model.load_state_dict(to_load, strict=False)
    log.info("PixArt init from %s: %s", path, report.summary())
    return report


def _read_pixart(path: Path) -> dict[str, torch.Tensor]:
    """One file, or a diffusers folder (possibly sharded ``*.safetensors``)."""
    if path.is_dir():
        folder = path / "transformer" if (path / "transformer").is_dir() else path
        shards = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
        if not shards:
            raise CheckpointError(f"{folder} holds no diffusion_pytorch_model*.safetensors (a diffusers PixArt transformer)")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(read_state_dict(shard))
        return state
    return read_state_dict(path)
