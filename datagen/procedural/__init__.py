"""Procedural multi-view training scenes: seeded generator, CPU ray caster, camera paths.

``generate_scene(seed, kind)`` builds a scene, ``Renderer(scene).render(camera)`` gives a
``models.scene.Frame`` (RGB + metric z-depth), ``plan_cameras`` picks valid camera paths,
and ``worldfm datagen procedural`` (``cli.py``) writes whole datasets with ``datagen.dataset``.
"""
