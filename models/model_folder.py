"""The exported-model folder contract, shared by the exporter and the inference engine.

``models.export`` writes a folder of ONNX graphs plus ``manifest.json``; ``python_bridge.engine``
reads it. Both take the format tag, the graph input names and the file hashing from here, so
the two sides cannot drift. Torch-free on purpose: the engine must load without PyTorch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FORMAT = "worldfm-onnx"
FORMAT_VERSION = 1

# Input names per graph kind; a graph may omit inputs it does not use (the ONNX exporter drops them).
GENERATOR_INPUTS = ["noise", "anchor_latent", "anchor_mask", "ref_latent", "ref_K", "ref_c2w", "tgt_K", "tgt_c2w"]
# The decoder may also take the anchor rendering (holes filled by push-pull) and its mask
# (models.autoencoder.AnchorDecoder); a plain decoder takes the latent alone.
DECODER_INPUTS = ["latent", "anchor", "anchor_mask"]
GRAPH_INPUTS = {"encoder": ["image"], "generator": GENERATOR_INPUTS, "decoder": DECODER_INPUTS}


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, streamed (model files are tens of MB)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
