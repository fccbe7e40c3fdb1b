"""Run by test_train.py under torchrun: 4 DDP steps of the tiny model on the cached test pairs.

Arguments: the latent cache folder, the run folder. Each rank writes ``rank<N>.sum``: a
checksum of its final weights (equal on both ranks when DDP keeps them in sync).
"""

import sys
from pathlib import Path

import torch

from models.pairs import PairConfig, PairDataset
from models.train import TrainConfig, train
from training_fixtures import IMAGE_SIZE, procedural_scenes, tiny_codec


def main() -> None:
    cache, out = Path(sys.argv[1]), Path(sys.argv[2])
    encoder, _ = tiny_codec()
    dataset = PairDataset(procedural_scenes(2, 8), encoder, PairConfig(image_size=IMAGE_SIZE), cache)
    config = TrainConfig(model="tiny", steps=4, batch_size=4, lr=1e-3, warmup=1, save_every=4, log_every=2)
    model = train(dataset, out, config, progress=False)
    rank = torch.distributed.get_rank()
    total = sum(float(p.double().sum()) for p in model.parameters())
    (out / f"rank{rank}.sum").write_text(f"{total:.12e}")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
