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

Everything here is real-valued tensor algebra with closed-form inverses (no complex
numbers, no ``torch.linalg.inv``, no data-dependent control flow), so it traces to ONNX.
The slow, obviously-correct version of the formula lives in ``tests/models/test_prope.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROPE_BASE = 100.0  # frequency base of the RoPE quarters, as in the paper's code


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
    """Closed-form inverse of upper-triangular pinhole intrinsics without skew (..., 3, 3)."""
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    cx, cy = K[..., 0, 2], K[..., 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([1.0 / fx, zero, -cx / fx], dim=-1),
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


def _rope_angles(positions: torch.Tensor, quarter: int) -> torch.Tensor:
    """Positions (N,) -> angles (N, quarter/2), frequencies ``ROPE_BASE^(-k / (quarter/2))``."""
    n_freq = quarter // 2
    freqs = ROPE_BASE ** (-torch.arange(n_freq, dtype=torch.float32) / n_freq)
    return positions.float()[:, None] * freqs[None, :]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse: bool) -> torch.Tensor:
    """Rotate the pairs (x[k], x[k + n/2]) of the last dim by -angle (or +angle if ``inverse``)."""
    a, b = x.chunk(2, dim=-1)
    if inverse:
        return torch.cat([cos * a - sin * b, sin * a + cos * b], dim=-1)
    return torch.cat([cos * a + sin * b, cos * b - sin * a], dim=-1)


def _apply_matrix(x: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Apply per-token 4x4 matrices to consecutive blocks of 4 channels.

    ``x``: (B, heads, N, 4k); ``M``: (B, N, 4, 4) -> (B, heads, N, 4k).
    """
    b, h, n, c = x.shape
    blocks = x.reshape(b, h, n, c // 4, 4)
    out = torch.einsum("bnij,bhnkj->bhnki", M, blocks)
    return out.reshape(b, h, n, c)


@dataclass(frozen=True)
class PRoPETransforms:
    """The per-token transforms of one forward pass, shared by every attention layer.

    ``q_mat``/``kv_mat``/``o_mat``: (B, N, 4, 4) = ``P^T``, ``P^-1``, ``P`` of each token's
    view; ``cos_x``/``sin_x``/``cos_y``/``sin_y``: (N, head_dim/8) RoPE coefficients.
    """

    q_mat: torch.Tensor
    kv_mat: torch.Tensor
    o_mat: torch.Tensor
    cos_x: torch.Tensor
    sin_x: torch.Tensor
    cos_y: torch.Tensor
    sin_y: torch.Tensor

    def _apply(self, x: torch.Tensor, mat: torch.Tensor, inverse: bool) -> torch.Tensor:
        """``x``: (B, heads, N, head_dim) -> the same shape, in ``x``'s dtype."""
        d = x.shape[-1]
        proj, rx, ry = x.float().split([d // 2, d // 4, d // 4], dim=-1)
        proj = _apply_matrix(proj, mat)
        rx = _rotate(rx, self.cos_x, self.sin_x, inverse)
        ry = _rotate(ry, self.cos_y, self.sin_y, inverse)
        return torch.cat([proj, rx, ry], dim=-1).to(x.dtype)

    def queries(self, q: torch.Tensor) -> torch.Tensor:
        """Transform queries (B, heads, N, head_dim) by ``P^T`` and the forward rotation."""
        return self._apply(q, self.q_mat, inverse=False)

    def keys_values(self, kv: torch.Tensor) -> torch.Tensor:
        """Transform keys or values (B, heads, N, head_dim) by ``P^-1`` and the forward rotation."""
        return self._apply(kv, self.kv_mat, inverse=False)

    def outputs(self, o: torch.Tensor) -> torch.Tensor:
        """Transform attention outputs (B, heads, N, head_dim) by ``P`` and the inverse rotation."""
        return self._apply(o, self.o_mat, inverse=True)


def prepare_prope(
    K: torch.Tensor,
    w2c: torch.Tensor,
    image_hw: tuple[int, int],
    token_view: torch.Tensor,
    token_xy: torch.Tensor,
    head_dim: int,
) -> PRoPETransforms:
    """Build the transforms for tokens drawn from several views.

    ``K``: (B, V, 3, 3) pixels of the ``(H, W)`` image; ``w2c``: (B, V, 4, 4);
    ``token_view``: (N,) long, the view of each token (any order: no reordering needed);
    ``token_xy``: (N, 2) long, each token's patch column and row inside its view;
    ``head_dim``: a multiple of 8.
    """
    if head_dim % 8:
        raise ValueError(f"PRoPE needs an attention head dim that is a multiple of 8; got {head_dim}")
    P, P_inv = projective_matrices(K, w2c, image_hw)  # (B, V, 4, 4)
    P_tok = P.index_select(1, token_view)  # (B, N, 4, 4)
    P_inv_tok = P_inv.index_select(1, token_view)
    ang_x = _rope_angles(token_xy[:, 0], head_dim // 4)
    ang_y = _rope_angles(token_xy[:, 1], head_dim // 4)
    return PRoPETransforms(
        q_mat=P_tok.transpose(-1, -2),
        kv_mat=P_inv_tok,
        o_mat=P_tok,
        cos_x=ang_x.cos(),
        sin_x=ang_x.sin(),
        cos_y=ang_y.cos(),
        sin_y=ang_y.sin(),
    )
