"""Checkpoint I/O: our safetensors files, the published WorldFM weights, PixArt-alpha/Sigma weights.

* ``save_model`` / ``load_model``: our format, one ``.safetensors`` file whose metadata
  holds the ``DiTConfig`` as JSON, so a file is self-describing and loads strictly.
* ``load_published_checkpoint``: ``worldfm_1-step.pth`` / ``worldfm_2-step.pth`` into the
  ``xl`` config, strictly: every key and shape must match, except ``pos_embed`` (recomputed,
  as the published loader does) and the Plücker projector when the config does not use it.
* ``load_pixart_weights``: PixArt-alpha/Sigma XL/2 weights (original ``.pth`` layout or the
  diffusers ``PixArtTransformer2DModel`` layout) to initialise stage-2 training; returns a
  report of what was loaded, adapted, ignored and left at initialisation.

``.pth`` files are read with ``torch.load(weights_only=True)`` only: no pickled code runs.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file, unwrapped from a
    ``{"state_dict": ...}`` container if present. Raises ``CheckpointError`` on a missing,
    truncated or non-tensor file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"could not read checkpoint {path}: {exc}. Is the file complete (re-download it) and a "
            "plain tensor checkpoint? (.pth files are read with weights_only=True, which refuses pickled objects)"
        ) from exc
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


def load_published_checkpoint(path: str | Path, config: DiTConfig | None = None) -> WorldFMDiT:
    """The published ``worldfm_{1,2}-step.pth`` as a ``WorldFMDiT`` (``xl()`` unless given).

    Strict: reports missing/unexpected keys and shape mismatches instead of a silent partial
    load. ``pos_embed`` is dropped (recomputed for the concatenated grid); the Plücker
    projector may be absent when the config does not use it.
    """
    config = config or xl()
    if not config.checkpoint_compat:
        raise CheckpointError(f"config {config.name!r} lacks the published modules; use checkpoint_compat=True (e.g. xl())")
    state = dict(read_state_dict(path))
    state.pop("pos_embed", None)
    model = build_model(config)
    load_strict(model, state, str(path), optional=() if config.plucker else ("plucker_proj.",))
    return model.eval()


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
