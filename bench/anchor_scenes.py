"""Held-out test scenes for measuring anchor styles: procedural (in family) and photo-textured (out of family).

In family: ``datagen.procedural`` rooms exactly as the training data makes them. Out of family:
the same kind of room geometry and lighting, but every material's procedural pattern is
replaced by a photograph that scikit-image ships (``skimage/data``), tiled over the surface at
a random physical size and tinted -- detail at every scale, unlike any procedural pattern.
The photographs and their licences (from the docstrings of ``skimage.data``):

========================  =====================================================================
``brick.png``             CC0 (cc0textures.com "Bricks25"), greyscale
``gravel.png``            CC0 (cc0textures.com "Gravel04"), greyscale
``grass.png``             CC0 (DeviantArt "linolafett", Grass-01), greyscale
``chelsea.png``           CC0 by the photographer (Stefan van der Walt)
``coffee.png``            CC0 by the photographer (Rachel Michetti)
``astronaut.png``         public domain (NASA)
``rocket.jpg``            public domain (SpaceX)
``hubble_deep_field.jpg`` public domain (NASA)
========================  =====================================================================

Run ``python bench/anchor_scenes.py --out data/anchor-eval`` to write both sets as dataset
folders (``in_family/scene_*``, ``out_of_family/scene_*``) for ``worldfm eval``. Needs
scikit-image (``pip install scikit-image``) for the photographs; nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from datagen.procedural.renderer import Renderer
from datagen.procedural.scenes import ProceduralScene, generate_scene
from datagen.procedural.trajectories import plan_cameras
from models.scene import Scene

PHOTOS = ("brick.png", "gravel.png", "grass.png", "chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg",
          "hubble_deep_field.jpg")
# Seeds far from the ones `worldfm datagen procedural` draws for its default runs.
IN_FAMILY_SEED, OUT_OF_FAMILY_SEED = 910_000, 920_000


def load_photos() -> list[np.ndarray]:
    """The photographs as linear-RGB float32 [H, W, 3] in [0, 1] (greyscale ones repeated to RGB)."""
    from importlib.util import find_spec

    from PIL import Image

    spec = find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the out-of-family scenes texture walls with scikit-image's sample photos: "
                         "pip install scikit-image")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    photos = []
    for name in PHOTOS:
        rgb = np.asarray(Image.open(folder / name).convert("RGB"), np.float32) / 255.0
        photos.append(rgb**2.2)  # display (sRGB-ish) values to the renderer's linear light
    return photos


class PhotoRenderer(Renderer):
    """The procedural renderer with each material's pattern replaced by a tiled photograph.

    Material ``m`` gets photo ``m mod len(photos)`` (shuffled by the scene seed), tiles of
    0.4-2.5 m and a tint from the material's own first colour: shading, shadows and
    geometry stay the procedural renderer's; only albedo changes. Texels are looked up
    bilinearly at each ray's hit point (wrapping), so the image is a point sample per pixel,
    like the procedural patterns.
    """

    def __init__(self, scene: ProceduralScene, photos: list[np.ndarray]):
        super().__init__(scene)
        rng = np.random.default_rng([scene.seed, 0xF070])
        order = rng.permutation(len(photos))
        self._photos = [photos[order[m % len(photos)]] for m in range(len(scene.materials))]
        self._tile = rng.uniform(0.4, 2.5, len(scene.materials)).astype(np.float32)  # metres per photo
        tint = 0.5 + 0.5 * self._color_a / np.maximum(self._color_a.max(axis=1, keepdims=True), 1e-6)
        self._tint = tint.astype(np.float32)

    def _albedo(self, uv: np.ndarray, mat: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Tinted photo texels at ``uv``; ``footprint`` (each pixel's size on the surface) is not used:
        these scenes stay point-sampled as they were first measured (docs/anchor.md), unlike the
        renderer's own photo materials, which filter to it."""
        out = np.empty((len(uv), 3), np.float32)
        for m in np.flatnonzero(np.bincount(mat)):
            sel = np.flatnonzero(mat == m)
            photo = self._photos[m]
            h, w = photo.shape[:2]
            # Texel centres at +0.5, as pixels: texture coordinate (s, t) in photo widths.
            x = uv[sel, 0] / self._tile[m] * w - 0.5
            y = uv[sel, 1] / self._tile[m] * w - 0.5
            x0, y0 = np.floor(x), np.floor(y)
            fx, fy = (x - x0)[:, None], (y - y0)[:, None]
            c0, r0 = x0.astype(np.int64) % w, y0.astype(np.int64) % h
            c1, r1 = (c0 + 1) % w, (r0 + 1) % h
            top = photo[r0, c0] * (1 - fx) + photo[r0, c1] * fx
            bottom = photo[r1, c0] * (1 - fx) + photo[r1, c1] * fx
            out[sel] = (top * (1 - fy) + bottom * fy) * self._tint[m]
        return out


def held_out_scene(index: int, photo: bool, views: int = 24, size: int = 256, photos: list[np.ndarray] | None = None
               ) -> Scene:
    """Held-out scene ``index`` of the in-family (``photo=False``) or out-of-family set: indoor rooms."""
    seed = (OUT_OF_FAMILY_SEED if photo else IN_FAMILY_SEED) + index
    scene = generate_scene(seed, "indoor")
    cameras, _ = plan_cameras(scene, views, size, size)
    renderer = PhotoRenderer(scene, photos or load_photos()) if photo else Renderer(scene)
    frames = [renderer.render(cam, name=f"{i:05d}") for i, cam in enumerate(cameras)]
    family = "photo" if photo else "procedural"
    return Scene(name=f"{family}-{index:02d}", frames=frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for in_family/ and out_of_family/")
    parser.add_argument("--scenes", type=int, default=4, help="scenes per set (default 4)")
    parser.add_argument("--views", type=int, default=24, help="views per scene (default 24)")
    parser.add_argument("--size", type=int, default=256, help="square image size (default 256)")
    args = parser.parse_args()
    from tqdm import tqdm

    from datagen.dataset import write_scene

    photos = load_photos()
    for photo, folder in ((False, "in_family"), (True, "out_of_family")):
        for i in tqdm(range(args.scenes), desc=folder, unit="scene"):
            write_scene(held_out_scene(i, photo, args.views, args.size, photos), args.out / folder / f"scene_{i:05d}")
    print(f"wrote {args.scenes} scenes per set to {args.out}")


if __name__ == "__main__":
    main()
