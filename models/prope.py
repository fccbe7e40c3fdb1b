"""PRoPE: cameras as relative positional encoding in attention (arXiv:2507.10496).

Each token belongs to a view with a projective matrix ``P = lift(K_hat) @ w2c`` (4x4),
where ``K_hat`` is the pixel intrinsics normalised by the image size. Per token the
attention head dimension ``d`` is split into

* a projective half (``d/2`` channels, ``d/8`` blocks of 4) transformed by ``P``;
* two RoPE quarters (``d/4`` channels each) rotated by the token's patch column and row.

Queries get ``P^T`` (and the forward rotation), keys and values ``P^-1`` (and the same
rotation), ordinary scaled-dot-product attention runs unchanged, and the output gets ``P``
(and the inverse rotation). Scores and outputs then depend only on ``P_i P_j^-1`` and on
patch offsets, i.e. on *relative* cameras: moving every camera by the same rigid
transform leaves attention unchanged. Tokens of one view reduce to plain 2-D RoPE.

Tokens are ordered view by view, so each view's matrix applies to one contiguous block.
Everything here is real-valued tensor algebra with closed-form inverses (no complex
numbers, no ``torch.linalg.inv``, no data-dependent control flow), so it traces to ONNX.
The slow, obviously-correct version of the formula lives in ``tests/models/test_prope.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROPE_BASE = 100.0  # frequency base of the RoPE quarters, as in the paper's code

# Camera geometry (intrinsics in pixels, inverses, products of poses) loses too much in half
# precision: functions wearing this run in float32 with float32 inputs even under
# torch.autocast, which the fp16 export traces under (models/export.py).
full_precision = torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)


def rigid_inverse(T: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of rigid transforms (..., 4, 4) -> (..., 4, 4).

    The graph-traceable twin of ``models.cameras.c2w_to_w2c`` (which is NumPy-only and
    therefore cannot run inside an exported model).
    """
    rot_t = T[..., :3, :3].transpose(-1, -2)
    trans = -(rot_t @ T[..., :3, 3:4])
    top = torch.cat([rot_t, trans], dim=-1)  # (..., 3, 4)
    bottom = torch.zeros_like(T[..., 3:4, :])
    bottom[..., 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def normalised_intrinsics(K: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Pixel intrinsics (..., 3, 3) of an ``(H, W)`` image -> size-free intrinsics (..., 3, 3).

    ``fx/W, fy/H`` and a principal point measured from the image centre in image widths /
    heights, so a centred camera has ``cx_hat = cy_hat = 0`` whatever the resolution.
    """
    h, w = image_hw
    scale = K.new_tensor([[1.0 / w], [1.0 / h], [1.0]])  # rows 0, 1, 2
    offset = K.new_tensor([[0.0, 0.0, -0.5], [0.0, 0.0, -0.5], [0.0, 0.0, 0.0]])
    return K * scale + offset


def _lift(K: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 4, 4) block matrix ``[[K, 0], [0, 1]]``."""
    col = torch.zeros_like(K[..., :, :1])
    top = torch.cat([K, col], dim=-1)  # (..., 3, 4)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def _intrinsics_inverse(K: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of upper-triangular pinhole intrinsics (skew allowed), (..., 3, 3)."""
    fx, fy, skew = K[..., 0, 0], K[..., 1, 1], K[..., 0, 1]
    cx, cy = K[..., 0, 2], K[..., 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([1.0 / fx, -skew / (fx * fy), (skew * cy - cx * fy) / (fx * fy)], dim=-1),
        torch.stack([zero, 1.0 / fy, -cy / fy], dim=-1),
        torch.stack([zero, zero, one], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def projective_matrices(
    K: torch.Tensor, w2c: torch.Tensor, image_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``P = lift(K_hat) @ w2c`` and its closed-form inverse, each (..., 4, 4), in fp32.

    ``K``: (..., 3, 3) pixels of the ``(H, W)`` image; ``w2c``: (..., 4, 4) rigid.
    """
    K_hat = normalised_intrinsics(K.float(), image_hw)
    w2c = w2c.float()
    P = _lift(K_hat) @ w2c
    P_inv = rigid_inverse(w2c) @ _lift(_intrinsics_inverse(K_hat))
    return P, P_inv


def _rope_coefficients(token_xy: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE of the second half of a head as ``x * cos + partner(x) * sin``.

    ``token_xy``: (N, 2) patch column and row. Returns ``cos``/``sin`` (N, 2, 2, head_dim/8)
    indexed [token, quarter (column, row), half, frequency]. Within each quarter channel
    ``k`` pairs with ``k + head_dim/8`` (its partner is the other half, ``flip`` of the half
    axis) and rotates at frequency ``ROPE_BASE^(-k / (head_dim/8))``; the forward rotation
    maps a pair ``(a, b)`` to ``(cos a + sin b, cos b - sin a)``; the inverse negates ``sin``.
    """
    m = head_dim // 8  # frequencies per quarter
    freqs = ROPE_BASE ** (-torch.arange(m, dtype=torch.float32, device=token_xy.device) / m)
    angles = token_xy.float()[:, :, None] * freqs  # (N, 2, m)
    cos = torch.stack([angles.cos(), angles.cos()], dim=2)  # (N, 2, 2, m)
    sin = torch.stack([angles.sin(), -angles.sin()], dim=2)
    return cos, sin


@dataclass(frozen=True)
class PRoPETransforms:
    """The transforms of one forward pass, shared by every attention layer.

    Tokens must be ordered view by view (``V`` blocks of equal length). ``q_mat``/
    ``kv_mat``/``o_mat``: (B, 1, V, 4, 4), the right-multiplication forms of ``P^T``,
    ``P^-1`` and ``P`` per view; ``cos``/``sin``: (N, 2, 2, head_dim/8) from
    ``_rope_coefficients``.
    """

    q_mat: torch.Tensor
    kv_mat: torch.Tensor
    o_mat: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor

    def _apply(self, x: torch.Tensor, mat: torch.Tensor, inverse: bool) -> torch.Tensor:
        """``x``: (..., B, heads, N, head_dim) -> the same shape, in ``x``'s dtype."""
        *lead, n, d = x.shape
        views, m = mat.shape[-3], d // 8
        proj, rope = x.float().split([d // 2, d // 2], dim=-1)
        proj = (proj.reshape(*lead, views, n // views * m, 4) @ mat).reshape(*lead, n, d // 2)
        rope = rope.reshape(*lead, n, 2, 2, m)
        sin = -self.sin if inverse else self.sin
        rope = (rope * self.cos + rope.flip(-2) * sin).reshape(*lead, n, d // 2)
        return torch.cat([proj, rope], dim=-1).to(x.dtype)

    def queries(self, q: torch.Tensor) -> torch.Tensor:
        """Transform queries (B, heads, N, head_dim) by ``P^T`` and the forward rotation."""
        return self._apply(q, self.q_mat, inverse=False)

    def keys_values(self, kv: torch.Tensor) -> torch.Tensor:
        """Transform keys and/or values (..., B, heads, N, head_dim) by ``P^-1`` and the forward rotation."""
        return self._apply(kv, self.kv_mat, inverse=False)

    def outputs(self, o: torch.Tensor) -> torch.Tensor:
        """Transform attention outputs (B, heads, N, head_dim) by ``P`` and the inverse rotation."""
        return self._apply(o, self.o_mat, inverse=True)


@full_precision
def prepare_prope(
    K: torch.Tensor,
    w2c: torch.Tensor,
    image_hw: tuple[int, int],
    token_xy: torch.Tensor,
    head_dim: int,
) -> PRoPETransforms:
    """Build the transforms for V views whose tokens are ordered view by view.

    ``K``: (B, V, 3, 3) pixels of the ``(H, W)`` image; ``w2c``: (B, V, 4, 4);
    ``token_xy``: (N, 2) long, each token's patch column and row inside its view (N = V n,
    view ``v`` owning tokens ``v n .. (v + 1) n - 1``); ``head_dim``: a multiple of 8.
    """
    if head_dim % 8:
        raise ValueError(f"PRoPE needs an attention head dim that is a multiple of 8; got {head_dim}")
    P, P_inv = projective_matrices(K, w2c, image_hw)  # (B, V, 4, 4)
    cos, sin = _rope_coefficients(token_xy, head_dim)
    # x @ M^T applies M to each block of 4 channels; so P^T -> P, P^-1 -> P^-T, P -> P^T.
    return PRoPETransforms(
        q_mat=P[:, None],
        kv_mat=P_inv.transpose(-1, -2)[:, None],
        o_mat=P.transpose(-1, -2)[:, None],
        cos=cos,
        sin=sin,
    )
