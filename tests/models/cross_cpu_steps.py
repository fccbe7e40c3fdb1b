"""Two optimisation steps of the autoencoder and of the DiT teacher, and one distillation step of a
generator started from that teacher (DMD against the teacher and a critic copy), as the trainers
take them, on seeded random data; prints the CPU capability torch runs at and a hash of each
network's weights and gradients. tests/models/test_cross_cpu.py runs it on this CPU and on an
emulated one and compares.
"""

from __future__ import annotations

import hashlib

import torch

from models.autoencoder import demo_autoencoder
from models.distill import dmd_loss, generator_from_teacher, generator_output
from models.dit import build_model, get_config
from models.sampling import DISTILLED_T, Condition
from models.train import CONDITION_KEYS, denoising_loss
from models.train_autoencoder import autoencoder_loss
from models.train_state import adamw


def digest(tensors) -> str:
    return hashlib.sha1(b"".join(t.detach().contiguous().numpy().tobytes() for t in tensors)).hexdigest()[:12]


def main() -> None:
    torch.set_num_threads(1)  # retrain.sh trains each process on one thread (THREADS=1)
    torch.manual_seed(0)
    vae = demo_autoencoder("tiny16", 32)
    opt = adamw(vae.parameters(), lr=2e-3, weight_decay=0.0)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    for _ in range(2):
        loss, _ = autoencoder_loss(vae, images, 0.0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
    ae = digest(vae.parameters())

    model = build_model(get_config("demo", hidden_size=192, num_heads=3, depth=2, latent_channels=32,
                                   anchor_filled=True))
    opt = adamw(model.parameters(), lr=5e-4, weight_decay=0.0)
    b, c, s = 2, 32, 16
    K = torch.tensor([[256.0, 0.0, 128.0], [0.0, 256.0, 128.0], [0.0, 0.0, 1.0]]).expand(b, 3, 3).clone()
    target = torch.eye(4).expand(b, 4, 4).clone()
    target[:, :3, 3] = torch.tensor([[0.3, 0.0, 0.1], [-0.2, 0.1, 0.0]])
    batch = {"target_latent": torch.randn(b, c, s, s), "anchor_latent": torch.randn(b, c, s, s),
             "anchor_mask": (torch.rand(b, 1, 16 * s, 16 * s) > 0.3).float(), "ref_latent": torch.randn(b, c, s, s),
             "ref_K": K, "ref_c2w": torch.eye(4).expand(b, 4, 4).clone(), "tgt_K": K, "tgt_c2w": target}
    for _ in range(2):
        loss = denoising_loss(model, batch, torch.tensor([10, 900]), torch.randn(b, c, s, s))
        opt.zero_grad()
        loss.backward()
        grads = digest(p.grad for p in model.parameters() if p.grad is not None)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    teacher = digest(model.parameters())

    generator = generator_from_teacher(model)  # v from eps: the exact schedule roots in its output
    critic = generator_from_teacher(model, from_x0=False)
    opt = adamw(generator.parameters(), lr=1e-4, weight_decay=0.0)
    cond = Condition(*(batch[k] for k in CONDITION_KEYS))
    x = generator_output(generator, torch.randn(b, c, s, s), DISTILLED_T, cond)
    loss = dmd_loss(x, model, critic, cond, torch.tensor([300, 700]), torch.randn(b, c, s, s), 2.0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(torch.backends.cpu.get_cpu_capability(),
          f"autoencoder={ae} dit_grad={grads} dit={teacher} generator={digest(generator.parameters())}")


if __name__ == "__main__":
    main()
