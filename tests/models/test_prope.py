"""PRoPE against a slow, direct implementation of the paper's formula, and its invariances."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from dit_fixtures import random_K, random_rigid

from models.prope import ROPE_BASE, prepare_prope, projective_matrices, rigid_inverse


def token_layout(views: int, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """View index (N,) and patch (column, row) (N, 2), tokens view by view, row-major in a view."""
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    xy = torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=-1)
    return torch.arange(views).repeat_interleave(grid_h * grid_w), xy.repeat(views, 1)


def slow_prope_attention(q, k, v, K, c2w, hw, view, xy):
    """The paper's formula token by token: D_t = blockdiag(P_t (x d/8), R(theta_x), R(theta_y)),
    score_ij = (D_i^T q_i) . (D_j^-1 k_j) / sqrt(d), o_i = D_i sum_j a_ij D_j^-1 v_j.
    Batch 1, float64, general matrix inverses."""
    h, w = hw
    d = q.shape[-1]
    n = q.shape[-2]
    Ps = []
    for Ki, T in zip(K[0], c2w[0]):
        K_hat = torch.tensor([
            [Ki[0, 0] / w, 0.0, Ki[0, 2] / w - 0.5],
            [0.0, Ki[1, 1] / h, Ki[1, 2] / h - 0.5],
            [0.0, 0.0, 1.0],
        ], dtype=torch.float64)
        lifted = torch.eye(4, dtype=torch.float64)
        lifted[:3, :3] = K_hat
        Ps.append(lifted @ torch.linalg.inv(T))

    def rope_block(pos: float) -> torch.Tensor:
        m = d // 8  # frequencies per quarter
        R = torch.zeros(d // 4, d // 4, dtype=torch.float64)
        for kk in range(m):
            ang = pos * ROPE_BASE ** (-kk / m)
            c, s = math.cos(ang), math.sin(ang)
            R[kk, kk], R[kk, kk + m] = c, -s
            R[kk + m, kk], R[kk + m, kk + m] = s, c
        return R

    D = []
    for t in range(n):
        blocks = [Ps[int(view[t])]] * (d // 8) + [rope_block(float(xy[t, 0])), rope_block(float(xy[t, 1]))]
        D.append(torch.block_diag(*blocks))
    D = torch.stack(D)  # (N, d, d)
    D_inv = torch.linalg.inv(D)
    out = torch.zeros_like(q)
    for head in range(q.shape[1]):
        qt = torch.einsum("nji,nj->ni", D, q[0, head])  # D^T q
        kt = torch.einsum("nij,nj->ni", D_inv, k[0, head])
        vt = torch.einsum("nij,nj->ni", D_inv, v[0, head])
        a = torch.softmax(qt @ kt.T / math.sqrt(d), dim=-1)
        out[0, head] = torch.einsum("nij,nj->ni", D, a @ vt)
    return out


def fast_prope_attention(q, k, v, K, c2w, hw, view, xy):
    tr = prepare_prope(K, rigid_inverse(c2w), hw, xy, q.shape[-1])
    o = F.scaled_dot_product_attention(tr.queries(q), tr.keys_values(k), tr.keys_values(v))
    return tr.outputs(o)


@pytest.mark.parametrize(
    "views,grid_h,grid_w,head_dim,heads",
    [(1, 1, 1, 8, 1), (2, 2, 3, 16, 2), (3, 2, 2, 32, 1), (3, 3, 1, 8, 2)],
)
def test_fast_prope_matches_paper_formula(views, grid_h, grid_w, head_dim, heads):
    gen = torch.Generator().manual_seed(views * 100 + head_dim)
    hw = (grid_h * 16, grid_w * 16)
    K = random_K(gen, views, hw)[None]
    c2w = random_rigid(gen, views, scale=0.5)[None]
    view, xy = token_layout(views, grid_h, grid_w)
    n = view.numel()
    q, k, v = (0.5 * torch.randn(1, heads, n, head_dim, generator=gen, dtype=torch.float64) for _ in range(3))
    slow = slow_prope_attention(q, k, v, K, c2w, hw, view, xy)
    fast = fast_prope_attention(q.float(), k.float(), v.float(), K, c2w, hw, view, xy)
    torch.testing.assert_close(fast.double(), slow, rtol=1e-4, atol=1e-4)


def test_attention_is_invariant_to_a_global_rigid_transform_and_sees_each_camera():
    gen = torch.Generator().manual_seed(0)
    views, grid_h, grid_w, d = 3, 3, 3, 16
    hw = (48, 48)
    K = random_K(gen, views, hw)[None].repeat(2, 1, 1, 1)
    c2w = random_rigid(gen, 2 * views, scale=0.5).reshape(2, views, 4, 4)
    view, xy = token_layout(views, grid_h, grid_w)
    q, k, v = (torch.randn(2, 2, view.numel(), d, generator=gen) for _ in range(3))
    base = fast_prope_attention(q, k, v, K, c2w, hw, view, xy)

    G = random_rigid(gen, 1, scale=3.0)[0]
    moved_world = fast_prope_attention(q, k, v, K, G @ c2w, hw, view, xy)
    torch.testing.assert_close(moved_world, base, rtol=1e-4, atol=1e-4)

    one_moved = c2w.clone()
    one_moved[:, 1] = random_rigid(gen, 1, scale=0.3)[0] @ c2w[:, 1]
    changed = fast_prope_attention(q, k, v, K, one_moved, hw, view, xy)
    assert (changed - base).abs().max() > 1e-2


def test_one_view_reduces_to_2d_rope():
    """With a single camera P_i P_j^-1 = I: the projective half is plain attention."""
    gen = torch.Generator().manual_seed(1)
    d, hw = 16, (32, 32)
    view, xy = token_layout(1, 2, 2)
    q, k, v = (torch.randn(1, 1, 4, d, generator=gen) for _ in range(3))
    out_a = fast_prope_attention(q, k, v, random_K(gen, 1, hw)[None], random_rigid(gen, 1)[None], hw, view, xy)
    out_b = fast_prope_attention(q, k, v, random_K(gen, 1, hw)[None], random_rigid(gen, 1)[None], hw, view, xy)
    torch.testing.assert_close(out_a, out_b, rtol=1e-4, atol=1e-4)


def test_projective_inverse_and_rigid_inverse_are_exact():
    gen = torch.Generator().manual_seed(2)
    T = random_rigid(gen, 5)
    torch.testing.assert_close(rigid_inverse(T), torch.linalg.inv(T))
    K = random_K(gen, 5, (64, 48))
    K[:, 0, 1] = 3.0  # skew
    P, P_inv = projective_matrices(K, torch.linalg.inv(T), (64, 48))
    torch.testing.assert_close(P @ P_inv, torch.eye(4).expand(5, 4, 4), rtol=1e-5, atol=1e-5)


def test_head_dim_must_be_multiple_of_8():
    _, xy = token_layout(1, 1, 1)
    with pytest.raises(ValueError, match="multiple of 8"):
        prepare_prope(torch.eye(3)[None, None], torch.eye(4)[None, None], (8, 8), xy, 12)
