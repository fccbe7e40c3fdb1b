"""The WorldFM frame model: a PixArt-style DiT over three views, read top to bottom.

One forward predicts the noise (or, for distilled models, the sampler's ``out``) of the
target view from three latents of equal shape (B, C, h, w):

* ``z_t``: the noisy target latent at timestep ``t``;
* ``anchor_latent``: the latent of the point-cloud rendering at the target camera,
  with ``anchor_mask`` (B, 1, H, W), 1 where the rendering has a point (pixels);
* ``ref_latent``: the latent of the reference image, seen by the reference camera.

Layout ("tri-condition", as published): the three latents are concatenated along width
``[target | anchor | reference]`` -> (B, C, h, 3w), patchified and processed with joint
self-attention; only the target's tokens go through the final layer. Sin-cos position
embeddings are computed for the concatenated grid, exactly as the published model does.
Inside the network tokens are ordered view by view (attention does not care), which lets
PRoPE apply one matrix per view. Our variant ``ref_isolated`` stops reference tokens from
attending to the other views, so the reference's keys/values can be cached across frames.

Camera conditioning, each switchable in ``DiTConfig`` and fixed at construction:

* PRoPE (``models.prope``) inside every self-attention: views are target, anchor (the
  target camera) and reference;
* Plücker rays per token, projected to the width and added to the tokens.

Cameras are given raw (K pixels of the H x W image, c2w metres in ``models.cameras``'
convention) and normalised inside the model: the reference camera becomes the identity and
translations are divided by ``pose_scale_m``, so only relative poses reach the network.

Published-checkpoint compatibility: with ``checkpoint_compat`` the model also holds the
modules that the published PixArt-Sigma/WorldFM net stores but its inference never runs
(caption embedder, cross-attention, Plücker projector), so ``xl()`` has the state-dict keys
and shapes of ``worldfm_1-step.pth`` (see ``models.checkpoints``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.prope import PRoPETransforms, full_precision, prepare_prope, rigid_inverse
from models.sampling import SCHEDULE_ROOTS, signal_noise_at

NUM_VIEWS = 3  # target, anchor, reference -- in this order along the width
REFERENCE = 2  # index of the reference view
CAPTION_CHANNELS = 4096  # T5-XXL width of the published caption embedder
CAPTION_TOKENS = 300  # PixArt-Sigma's caption length (its null-caption buffer)
FREQ_EMBED_DIM = 256  # sinusoidal timestep features before the timestep MLP
ABLATABLE = ("anchor", "reference")  # inputs DiTConfig.ablate may remove


@dataclass(frozen=True)
class DiTConfig:
    """Everything that fixes the network's shape and behaviour.

    ``latent_size``: h = w of one view's latent for which the model is built (position
    embeddings are recomputed for any other size). ``vae_downsample``: image pixels per
    latent pixel (to read K in pixels and pool the anchor mask). ``anchor_mask_channel``:
    feed the pooled anchor mask as an extra input channel (zeros for the other views).
    ``ref_isolated``: reference tokens attend only to reference tokens, so their per-layer
    keys/values depend on the reference alone: the forward runs the reference on its own
    first (``reference_kv``), and a server can cache that across frames. ``ablate``: inputs
    the model never sees, for the paper's ablations -- ``"anchor"`` (anchor latent and
    mask) and/or ``"reference"`` (reference latent) are zeroed inside every forward, in
    training, sampling and export alike, as condition dropout zeroes them. The tokens stay,
    so shapes, cost and the camera path are unchanged; only their content is gone.
    ``v_from_eps``: the network predicts noise, and the model returns the matching v
    (``_sampler_output``), the output the published distilled sampler reads. A generator
    distilled from a noise-predicting teacher starts as the teacher with this set, so its
    first step is the teacher's x0 estimate (``models.distill.generator_from_teacher``).
    ``anchor_filled``: the anchor latent is the encoding of the anchor rendering with its holes
    filled by push-pull (``models.anchor.fill_holes``) instead of left black; the training
    pairs, the evaluation and the server encode it that way for such a model (the mask still
    says which pixels the cloud covers). Why: the fill's continuation of the surroundings is
    then in the input, for the generator to keep where it has nothing better (docs/training.md).
    """

    name: str
    latent_channels: int = 4
    latent_size: int = 64
    vae_downsample: int = 8
    patch_size: int = 2
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    learn_sigma: bool = True
    anchor_mask_channel: bool = False
    prope: bool = False
    plucker: bool = False
    ref_isolated: bool = False
    checkpoint_compat: bool = False
    pe_interpolation: float = 1.0
    pose_scale_m: float = 1.0
    ablate: tuple[str, ...] = ()
    v_from_eps: bool = False
    anchor_filled: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ablate", tuple(self.ablate))  # JSON metadata gives a list
        if unknown := set(self.ablate) - set(ABLATABLE):
            raise ValueError(f"ablate {sorted(unknown)}: only {list(ABLATABLE)} can be ablated")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.prope and self.head_dim % 8:
            raise ValueError(f"PRoPE needs head_dim % 8 == 0; {self.name} has head_dim {self.head_dim}")
        if self.latent_size % self.patch_size:
            raise ValueError(f"latent_size {self.latent_size} is not divisible by patch_size {self.patch_size}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def in_channels(self) -> int:
        return self.latent_channels + int(self.anchor_mask_channel)

    @property
    def out_channels(self) -> int:
        return self.latent_channels * (2 if self.learn_sigma else 1)

    @property
    def image_size(self) -> int:
        return self.latent_size * self.vae_downsample

    @property
    def tokens(self) -> int:
        """Tokens in self-attention for one forward at ``latent_size``."""
        return NUM_VIEWS * (self.latent_size // self.patch_size) ** 2


# ----------------------------------------------------------------------------- embeddings


def sincos_pos_embed(dim: int, grid_h: int, grid_w: int, base_size: int, interpolation: float) -> torch.Tensor:
    """2-D sin-cos position embeddings (grid_h * grid_w, dim), tokens row-major.

    PixArt's variant: coordinates are stretched so each axis spans ``base_size`` units
    whatever its token count (``i * base_size / grid / interpolation``); the first half of
    the channels encodes the column, the second the row, each as ``[sin, cos]`` with
    frequencies ``10000^(-k / (dim/4))``. Computed in float64 like the published numpy code.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim % 4 == 0; got {dim}")
    cols = torch.arange(grid_w, dtype=torch.float64) * (base_size / grid_w) / interpolation
    rows = torch.arange(grid_h, dtype=torch.float64) * (base_size / grid_h) / interpolation
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    col_emb = encode(cols)[None, :, :].expand(grid_h, grid_w, dim // 2)
    row_emb = encode(rows)[:, None, :].expand(grid_h, grid_w, dim // 2)
    return torch.cat([col_emb, row_emb], dim=-1).reshape(grid_h * grid_w, dim).float()


class PatchEmbed(nn.Module):
    """(B, C, H, W) latent -> (B, H/p * W/p, D) tokens, row-major."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Timesteps (B,) -> (B, D): sinusoid ``[cos, sin]`` of 256 features, then an MLP."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(FREQ_EMBED_DIM, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = FREQ_EMBED_DIM // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        # Features in float32 for accuracy, then in the MLP's dtype (a .half() model's).
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1).to(self.mlp[0].weight.dtype))


class Mlp(nn.Module):
    """Two linear layers with tanh-GELU; (..., D_in) -> (..., D_out)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    """The published T5-caption projector and its null caption, held only so checkpoints load.

    The published inference feeds zero captions with cross-attention disabled, so the
    caption path has no effect on its output and is never run here.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.y_proj = Mlp(CAPTION_CHANNELS, hidden_size, hidden_size)
        self.register_buffer("y_embedding", torch.zeros(CAPTION_TOKENS, CAPTION_CHANNELS))


class CrossAttention(nn.Module):
    """Caption cross-attention weights of the published block (loaded, never run; see above)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.q_linear = nn.Linear(hidden_size, hidden_size)
        self.kv_linear = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)


@full_precision
def plucker_rays(
    K: torch.Tensor, c2w: torch.Tensor, image_hw: tuple[int, int], token_view: torch.Tensor, token_xy: torch.Tensor,
    grid_hw: tuple[int, int],
) -> torch.Tensor:
    """Per-token Plücker coordinates ``(o x d, d)`` (B, N, 6) of the ray through each patch centre.

    ``K``: (B, V, 3, 3) pixels of the ``(H, W)`` image; ``c2w``: (B, V, 4, 4) (normalised);
    ``token_view``/``token_xy``: (N,), (N, 2) view and patch (column, row) of each token on a
    per-view grid of ``grid_hw`` tokens. Patch centres sit at ``(col + 0.5) * W / grid_w``
    pixels under our pixel-centre convention (the image spans [0, W] x [0, H]).
    """
    h, w = image_hw
    u = (token_xy[:, 0].float() + 0.5) * (w / grid_hw[1])
    v = (token_xy[:, 1].float() + 0.5) * (h / grid_hw[0])
    K_tok = K.float().index_select(1, token_view)  # (B, N, 3, 3)
    c2w_tok = c2w.float().index_select(1, token_view)  # (B, N, 4, 4)
    y_cam = (v - K_tok[..., 1, 2]) / K_tok[..., 1, 1]
    x_cam = (u - K_tok[..., 0, 2] - K_tok[..., 0, 1] * y_cam) / K_tok[..., 0, 0]  # as models.cameras.pixel_rays
    d_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam)], dim=-1)  # (B, N, 3)
    d = (c2w_tok[..., :3, :3] @ d_cam[..., None])[..., 0]
    d = d / d.norm(dim=-1, keepdim=True)
    origin = c2w_tok[..., :3, 3]
    return torch.cat([torch.cross(origin, d, dim=-1), d], dim=-1)


# ----------------------------------------------------------------------------- blocks


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation; ``x`` (B, N, D), ``shift``/``scale`` (B, 1, D)."""
    return x * (1 + scale) + shift


class SelfAttention(nn.Module):
    """Multi-head self-attention, optionally with PRoPE transforms and extra (e.g. cached)
    keys/values appended to the tokens' own."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self,
        x: torch.Tensor,
        prope: PRoPETransforms | None,
        extra_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x``: (B, N, D); ``extra_kv``: keys and values (B, heads, M, head_dim) of other tokens, already
        transformed. Returns the output (B, N, D) and this layer's own keys and values
        (B, heads, N, head_dim), after PRoPE."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, heads, N, head_dim)
        q, k, v = qkv
        if prope is not None:
            q = prope.queries(q)
            k, v = prope.keys_values(qkv[1:])  # keys and values share P^-1: one pass
        keys, values = (k, v) if extra_kv is None else (torch.cat([k, extra_kv[0]], 2), torch.cat([v, extra_kv[1]], 2))
        out = F.scaled_dot_product_attention(q, keys, values)
        if prope is not None:
            out = prope.outputs(out)
        return self.proj(out.transpose(1, 2).reshape(b, n, d)), k, v


class DiTBlock(nn.Module):
    """adaLN-single block: gated self-attention and MLP, modulated by the shared ``t_block``
    output plus this block's own ``scale_shift_table`` (6, D). (B, N, D) -> (B, N, D), with
    the attention's keys and values (see ``SelfAttention``)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        d = config.hidden_size
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d, config.num_heads)
        if config.checkpoint_compat:
            self.cross_attn = CrossAttention(d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(d, int(d * config.mlp_ratio), d)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d**0.5)

    def forward(
        self,
        x: torch.Tensor,
        t6: torch.Tensor,
        prope: PRoPETransforms | None,
        extra_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``t6``: (B, 6 * D), the shared ``t_block`` output."""
        b, _, d = x.shape
        mod = self.scale_shift_table[None] + t6.reshape(b, 6, d)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)  # (B, 1, D)
        attn, k, v = self.attn(modulate(self.norm1(x), shift_msa, scale_msa), prope, extra_kv)
        x = x + gate_msa * attn
        x = x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x, k, v


class FinalLayer(nn.Module):
    """Modulated norm + linear: (B, N, D) tokens -> (B, N, p * p * C_out) patches."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# ----------------------------------------------------------------------------- model


@full_precision
def normalise_cameras(
    ref_c2w: torch.Tensor, tgt_c2w: torch.Tensor, pose_scale_m: float
) -> torch.Tensor:
    """Raw poses (B, 4, 4) -> c2w of the three views (B, 3, 4, 4) relative to the reference.

    The reference becomes the identity; translations are divided by ``pose_scale_m``. A
    fixed scale (rather than, say, the reference-target distance) keeps the map smooth
    when the target sits on the reference, the common case in interactive use.
    """
    ref_inv = rigid_inverse(ref_c2w.float())
    rel_tgt = ref_inv @ tgt_c2w.float()
    rel_ref = ref_inv @ ref_c2w.float()
    rel = torch.stack([rel_tgt, rel_tgt, rel_ref], dim=1)  # target, anchor, reference
    s = 1.0 / pose_scale_m
    scale = rel.new_tensor([[1.0, 1.0, 1.0, s], [1.0, 1.0, 1.0, s], [1.0, 1.0, 1.0, s], [1.0, 1.0, 1.0, 1.0]])
    return rel * scale


def token_grid(grid_h: int, grid_w: int, views: int = NUM_VIEWS) -> tuple[torch.Tensor, torch.Tensor]:
    """View index (N,) and in-view patch (column, row) (N, 2) of each token, view-major.

    Inside the network tokens are ordered view by view (target, anchor, reference), each
    view row-major over ``grid_h x grid_w`` patches; attention does not care about order,
    and this one lets PRoPE apply one matrix per view and puts the target's tokens first.
    """
    idx = torch.arange(views * grid_h * grid_w)
    local = idx % (grid_h * grid_w)
    return idx // (grid_h * grid_w), torch.stack([local % grid_w, local // grid_w], dim=-1)


def to_view_major(x: torch.Tensor, grid_h: int, grid_w: int, views: int = NUM_VIEWS) -> torch.Tensor:
    """Tokens of a width-concatenated grid (B, grid_h * views * grid_w, D), row-major ->
    view-major (B, views * grid_h * grid_w, D)."""
    b, _, d = x.shape
    return x.reshape(b, grid_h, views, grid_w, d).transpose(1, 2).reshape(b, -1, d)


class WorldFMDiT(nn.Module):
    """The frame model; see the module docstring. Build with ``build_model(name)``."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, d)
        self.t_embedder = TimestepEmbedder(d)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        if config.checkpoint_compat:
            self.y_embedder = CaptionEmbedder(d)
        if config.plucker or config.checkpoint_compat:
            self.plucker_proj = nn.Sequential(nn.Linear(6, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList([DiTBlock(config) for _ in range(config.depth)])
        self.final_layer = FinalLayer(d, config.patch_size, config.out_channels)
        grid = config.latent_size // config.patch_size
        self.register_buffer("pos_embed", self._pos_embed(grid, grid), persistent=False)
        if config.v_from_eps:
            self.register_buffer("schedule_roots", SCHEDULE_ROOTS.float(), persistent=False)  # (2, T)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """PixArt's initialisation; the Plücker projector starts as a no-op (zero output) so
        it can be added to a pretrained backbone without disturbing it."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        nn.init.normal_(self.t_block[1].weight, std=0.02)
        if self.config.checkpoint_compat:
            nn.init.normal_(self.y_embedder.y_proj.fc1.weight, std=0.02)
            nn.init.normal_(self.y_embedder.y_proj.fc2.weight, std=0.02)
            for block in self.blocks:
                nn.init.zeros_(block.cross_attn.proj.weight)
        if hasattr(self, "plucker_proj"):
            nn.init.zeros_(self.plucker_proj[2].weight)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def _pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """(1, N, D) embeddings of the width-concatenated grid, in view-major token order."""
        c = self.config
        emb = sincos_pos_embed(c.hidden_size, grid_h, NUM_VIEWS * grid_w, c.latent_size // c.patch_size, c.pe_interpolation)
        return to_view_major(emb[None], grid_h, grid_w)

    def forward(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        anchor_latent: torch.Tensor,
        anchor_mask: torch.Tensor,
        ref_latent: torch.Tensor,
        ref_K: torch.Tensor,
        ref_c2w: torch.Tensor,
        tgt_K: torch.Tensor,
        tgt_c2w: torch.Tensor,
    ) -> torch.Tensor:
        """Predict the target's model output.

        ``z_t``, ``anchor_latent``, ``ref_latent``: (B, C, h, w); ``t``: (B,) timesteps in
        [0, 1000); ``anchor_mask``: (B, 1, h * f, w * f) in [0, 1] with f = vae_downsample;
        ``ref_K``/``tgt_K``: (B, 3, 3) pixels of the (h * f, w * f) image; ``ref_c2w``/
        ``tgt_c2w``: (B, 4, 4) metres. Returns (B, C_out, h, w); C_out = 2C with learned
        sigma (the first C channels are the prediction the samplers use).
        """
        x, t_emb = self._hidden(z_t, t, anchor_latent, anchor_mask, ref_latent, ref_K, ref_c2w, tgt_K, tgt_c2w)
        return self._sampler_output(self._target_output(x, t_emb, *self._grid(z_t)), z_t, t)

    def target_features(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        anchor_latent: torch.Tensor,
        anchor_mask: torch.Tensor,
        ref_latent: torch.Tensor,
        ref_K: torch.Tensor,
        ref_c2w: torch.Tensor,
        tgt_K: torch.Tensor,
        tgt_c2w: torch.Tensor,
    ) -> torch.Tensor:
        """The target's tokens after the last block, (B, n, D), inputs as ``forward``: the
        features a classifier head reads (DMD2's GAN term, ``models.distill.GANHead``)."""
        x, _ = self._hidden(z_t, t, anchor_latent, anchor_mask, ref_latent, ref_K, ref_c2w, tgt_K, tgt_c2w)
        grid_h, grid_w = self._grid(z_t)
        return x[:, : grid_h * grid_w]

    def _hidden(
        self, z_t: torch.Tensor, t: torch.Tensor, anchor_latent: torch.Tensor, anchor_mask: torch.Tensor,
        ref_latent: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor, tgt_K: torch.Tensor,
        tgt_c2w: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens after the last block (B, V n, D), target first, and ``t_emb`` (B, D)."""
        if self.config.ref_isolated:  # the reference first, on its own; then target + anchor (each ablates its own)
            keys, values = self.reference_kv(ref_latent, ref_K, t)
            return self._hidden_with_reference_kv(
                z_t, t, anchor_latent, anchor_mask, keys, values, ref_K, ref_c2w, tgt_K, tgt_c2w
            )
        anchor_latent, anchor_mask = self._unless_ablated("anchor", anchor_latent, anchor_mask)
        (ref_latent,) = self._unless_ablated("reference", ref_latent)
        views = [self._mask_channel(z_t, None), self._mask_channel(anchor_latent, anchor_mask), self._mask_channel(ref_latent, None)]
        c2w = normalise_cameras(ref_c2w, tgt_c2w, self.config.pose_scale_m)  # (B, 3, 4, 4)
        Ks = torch.stack([tgt_K, tgt_K, ref_K], dim=1).float()  # (B, 3, 3, 3)
        x, prope = self._tokens(views, Ks, c2w, first_view=0)
        t_emb, t6 = self._timestep(t, x.dtype)
        for block in self.blocks:
            x, _, _ = block(x, t6, prope)
        return x, t_emb

    def reference_kv(self, ref_latent: torch.Tensor, ref_K: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-layer keys and values of the reference's tokens, each (depth, B, heads, n, head_dim).

        With ``ref_isolated`` they depend only on the reference latent, its intrinsics (its
        normalised pose is the identity) and ``t``, so a server computes them once per
        reference and distilled timestep and passes them to ``forward_with_reference_kv``.
        """
        if not self.config.ref_isolated:
            raise ValueError("reference keys/values can be cached only with ref_isolated=True (reference tokens then ignore the target)")
        (ref_latent,) = self._unless_ablated("reference", ref_latent)
        b = ref_latent.shape[0]
        c2w = torch.eye(4, device=ref_latent.device).expand(b, 1, 4, 4)
        x, prope = self._tokens([self._mask_channel(ref_latent, None)], ref_K[:, None].float(), c2w, first_view=REFERENCE)
        _, t6 = self._timestep(t, x.dtype)
        keys, values = [], []
        for block in self.blocks:
            x, k, v = block(x, t6, prope)
            keys.append(k)
            values.append(v)
        return torch.stack(keys), torch.stack(values)

    def forward_with_reference_kv(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        anchor_latent: torch.Tensor,
        anchor_mask: torch.Tensor,
        ref_keys: torch.Tensor,
        ref_values: torch.Tensor,
        ref_K: torch.Tensor,
        ref_c2w: torch.Tensor,
        tgt_K: torch.Tensor,
        tgt_c2w: torch.Tensor,
    ) -> torch.Tensor:
        """``forward`` of a ``ref_isolated`` model with the reference's keys/values from
        ``reference_kv`` (same ``t``): only target and anchor tokens are computed, 2/3 of them."""
        x, t_emb = self._hidden_with_reference_kv(z_t, t, anchor_latent, anchor_mask, ref_keys, ref_values, ref_K,
                                                  ref_c2w, tgt_K, tgt_c2w)
        return self._sampler_output(self._target_output(x, t_emb, *self._grid(z_t)), z_t, t)

    def _hidden_with_reference_kv(
        self, z_t: torch.Tensor, t: torch.Tensor, anchor_latent: torch.Tensor, anchor_mask: torch.Tensor,
        ref_keys: torch.Tensor, ref_values: torch.Tensor, ref_K: torch.Tensor, ref_c2w: torch.Tensor,
        tgt_K: torch.Tensor, tgt_c2w: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Target and anchor tokens after the last block (B, 2n, D) and ``t_emb``, the
        reference's keys/values given."""
        anchor_latent, anchor_mask = self._unless_ablated("anchor", anchor_latent, anchor_mask)
        views = [self._mask_channel(z_t, None), self._mask_channel(anchor_latent, anchor_mask)]
        c2w = normalise_cameras(ref_c2w, tgt_c2w, self.config.pose_scale_m)[:, :REFERENCE]
        Ks = torch.stack([tgt_K, tgt_K], dim=1).float()
        x, prope = self._tokens(views, Ks, c2w, first_view=0)
        t_emb, t6 = self._timestep(t, x.dtype)
        for block, k, v in zip(self.blocks, ref_keys, ref_values):
            x, _, _ = block(x, t6, prope, (k, v))
        return x, t_emb

    def _unless_ablated(self, name: str, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``inputs`` as given, or zeroed if the config ablates ``name``."""
        return tuple(torch.zeros_like(x) for x in inputs) if name in self.config.ablate else inputs

    def _grid(self, latent: torch.Tensor) -> tuple[int, int]:
        """Tokens per view along height and width for a (B, C, h, w) latent."""
        return latent.shape[-2] // self.config.patch_size, latent.shape[-1] // self.config.patch_size

    def _mask_channel(self, latent: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Append the area-pooled anchor mask (or zeros for other views) if the config feeds it."""
        if not self.config.anchor_mask_channel:
            return latent
        if mask is None:
            return torch.cat([latent, torch.zeros_like(latent[:, :1])], dim=1)
        return torch.cat([latent, F.avg_pool2d(mask.to(latent.dtype), self.config.vae_downsample)], dim=1)

    def _tokens(
        self, views: list[torch.Tensor], Ks: torch.Tensor, c2w: torch.Tensor, first_view: int
    ) -> tuple[torch.Tensor, PRoPETransforms | None]:
        """Embed consecutive views ``first_view ..`` (each (B, C_in, h, w)) into view-major
        tokens (B, V n, D) with their positions (and Plücker rays), and their PRoPE transforms.
        ``Ks``/``c2w``: (B, V, 3, 3) / (B, V, 4, 4) normalised cameras of those views."""
        c = self.config
        grid_h, grid_w = self._grid(views[0])
        n, count = grid_h * grid_w, len(views)
        image_hw = (views[0].shape[-2] * c.vae_downsample, views[0].shape[-1] * c.vae_downsample)
        # Latents may come in float32 to a .half()/.to(bfloat16) model: compute in the model's dtype.
        latents = torch.cat(views, dim=-1).to(self.x_embedder.proj.weight.dtype)
        x = to_view_major(self.x_embedder(latents), grid_h, grid_w, count)
        pos = self.pos_embed if self.pos_embed.shape[1] == NUM_VIEWS * n else self._pos_embed(grid_h, grid_w).to(x.device)
        x = x + pos[:, first_view * n : (first_view + count) * n].to(x.dtype)
        token_view, token_xy = (g.to(x.device) for g in token_grid(grid_h, grid_w, count))
        if c.plucker:
            rays = plucker_rays(Ks, c2w, image_hw, token_view, token_xy, (grid_h, grid_w))
            x = x + self.plucker_proj(rays.to(x.dtype))
        prope = prepare_prope(Ks, rigid_inverse(c2w), image_hw, token_xy, c.head_dim) if c.prope else None
        return x, prope

    def _timestep(self, t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``t_emb`` (B, D) and the shared adaLN-single modulation ``t_block(t_emb)`` (B, 6D)."""
        t_emb = self.t_embedder(t).to(dtype)
        return t_emb, self.t_block(t_emb)

    def _sampler_output(self, out: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``out`` as predicted, or with ``v_from_eps`` its first C channels (an epsilon
        prediction) turned into ``v = (eps - s_t z_t) / a_t``, for which the published
        distilled sampler's ``a_t z_t - s_t v`` is the epsilon model's own x0 estimate."""
        if not self.config.v_from_eps:
            return out
        c = z_t.shape[1]
        signal, sigma = signal_noise_at(t.long(), out, self.schedule_roots)
        v = (out[:, :c] - sigma * z_t) / signal
        return torch.cat([v, out[:, c:]], dim=1)

    def _target_output(self, x: torch.Tensor, t_emb: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """Final layer on the target's tokens (the first view) -> (B, C_out, h, w)."""
        return self.unpatchify(self.final_layer(x[:, : grid_h * grid_w], t_emb), grid_h, grid_w)

    def unpatchify(self, patches: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """(B, grid_h * grid_w, p * p * C) -> (B, C, grid_h * p, grid_w * p)."""
        b = patches.shape[0]
        p, ch = self.config.patch_size, self.config.out_channels
        x = patches.reshape(b, grid_h, grid_w, p, p, ch)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, ch, grid_h * p, grid_w * p)


def example_inputs(config: DiTConfig, batch: int = 1, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Keyword inputs of ``WorldFMDiT.forward`` with the config's shapes (for tracing,
    FLOP counts and benchmarks): random latents, a full anchor mask, a centred camera
    with 60 degree FOV, the target 0.2 m right of the reference."""
    c, h, size = config.latent_channels, config.latent_size, config.image_size
    focal = size / 2 / math.tan(math.radians(30))
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]], device=device)
    tgt = torch.eye(4, device=device)
    tgt[0, 3] = 0.2
    latent = torch.randn(batch, c, h, h, device=device) if device != "meta" else torch.empty(batch, c, h, h, device=device)
    return dict(
        z_t=latent, t=torch.full((batch,), 999.0, device=device), anchor_latent=latent.clone(),
        anchor_mask=torch.ones(batch, 1, size, size, device=device), ref_latent=latent.clone(),
        ref_K=K.expand(batch, 3, 3), ref_c2w=torch.eye(4, device=device).expand(batch, 4, 4),
        tgt_K=K.expand(batch, 3, 3), tgt_c2w=tgt.expand(batch, 4, 4),
    )


def flops_per_step(config: DiTConfig, cached_reference: bool = False) -> int:
    """Floating-point operations of one forward at batch 1 (matmuls, convolutions and
    attention, as ``torch.utils.flop_counter`` counts them), on the meta device.

    ``cached_reference``: count ``forward_with_reference_kv`` only (the reference's keys and
    values come from a cache); needs a ``ref_isolated`` config.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(config, device="meta")
    inputs = example_inputs(config, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad():
        if cached_reference:
            keys, values = model.reference_kv(inputs["ref_latent"], inputs["ref_K"], inputs["t"])
            cached = {k: v for k, v in inputs.items() if k != "ref_latent"}
            with counter:
                model.forward_with_reference_kv(ref_keys=keys, ref_values=values, **cached)
        else:
            with counter:
                model(**inputs)
    return int(counter.get_total_flops())


# ----------------------------------------------------------------------------- configs


def tiny() -> DiTConfig:
    """Unit tests: every conditioning path on, a forward in milliseconds on CPU."""
    return DiTConfig(
        name="tiny", latent_size=8, hidden_size=64, depth=2, num_heads=2, mlp_ratio=2.0,
        anchor_mask_channel=True, prope=True, plucker=True,
    )


def demo() -> DiTConfig:
    """Our shipped 256x256 model for >= 10 frames/s on a 2-core CPU.

    A 16x autoencoder (``models.autoencoder.demo_autoencoder``: 256 px -> 16x16x8 latent)
    and patch 2 give 8x8 tokens per view, 192 in all -- token count is what CPU time
    follows. The reference is isolated so its keys/values can be cached per reference
    (about 1.4x faster steps, ``bench/bench_model.py``); trained from scratch, it costs
    nothing to decide this now and cannot be added after training.
    """
    return DiTConfig(
        name="demo", latent_channels=8, latent_size=16, vae_downsample=16, patch_size=2,
        hidden_size=256, depth=8, num_heads=4, learn_sigma=False,
        anchor_mask_channel=True, prope=True, plucker=False, ref_isolated=True,
    )


def xl() -> DiTConfig:
    """The published InSpatio-WorldFM net: PixArt-Sigma XL/2 at 512 px, tri-condition layout."""
    return DiTConfig(name="xl", checkpoint_compat=True)


CONFIGS: dict[str, Callable[[], DiTConfig]] = {"tiny": tiny, "demo": demo, "xl": xl}


def get_config(name: str, **overrides: object) -> DiTConfig:
    """The named config, with fields replaced by ``overrides`` (e.g. ``prope=False``)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}")
    return replace(CONFIGS[name](), **overrides)


def build_model(config: DiTConfig | str, device: torch.device | str | None = None) -> WorldFMDiT:
    """A freshly initialised model; ``device="meta"`` builds shapes without allocating weights."""
    cfg = get_config(config) if isinstance(config, str) else config
    with torch.device(device or "cpu"):
        return WorldFMDiT(cfg)
