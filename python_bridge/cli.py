"""The ``worldfm`` command: one entry point, subcommands contributed by each package.

Each module in ``_COMMAND_MODULES`` exposes ``register(subparsers)`` that adds its
subcommands and binds a handler with ``parser.set_defaults(func=...)``. Modules keep heavy
imports (torch, onnxruntime) inside their handlers so ``worldfm --help`` stays fast.
Commands grouped under a parent (``worldfm datagen procedural``) share that parent's parser.
Commands that wire packages together (read a dataset with ``datagen``, hand it to ``models``)
live in ``python_bridge.commands``, the only place allowed to import both.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (parent command or None for top level, module path). Order is the order in --help.
_COMMAND_MODULES: list[tuple[str | None, str]] = [
    ("datagen", "datagen.procedural.cli"),
    ("datagen", "datagen.unrealcv.cli"),
    (None, "python_bridge.commands.anchor"),
    (None, "python_bridge.commands.model"),
    (None, "python_bridge.commands.training"),
    (None, "python_bridge.commands.serve"),
    (None, "python_bridge.commands.batch"),
    (None, "python_bridge.commands.view"),
]

_PARENT_HELP = {"datagen": "generate multi-view training scenes"}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand whose module is installed."""
    parser = argparse.ArgumentParser(prog="worldfm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    parents: dict[str, argparse._SubParsersAction] = {}
    for parent, module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that package's commands are not built yet
            raise
        target = top
        if parent is not None:
            if parent not in parents:
                group = top.add_parser(parent, help=_PARENT_HELP.get(parent))
                parents[parent] = group.add_subparsers(dest=f"{parent}_command", metavar="SOURCE")
            target = parents[parent]
        module.register(target)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        _finish_background_compiles()


def _finish_background_compiles() -> None:
    """Let the anchor kernels' background compile (``models.anchor.splat._Compiled``) finish
    before the process starts to shut down, saying so rather than seeming to hang. Waiting
    later, when Python joins the compile thread at exit, is too late: by then
    concurrent.futures refuses new work, so inductor fails ("cannot schedule new futures after
    interpreter shutdown") and the next start compiles again."""
    splat = sys.modules.get("models.anchor.splat")  # loaded only by commands that render anchors
    if splat is not None and not splat.compiled_kernels_settled(timeout=0):
        logging.getLogger(__name__).info(
            "finishing the anchor kernels' background compile before exiting (the next start reuses it)")
        splat.compiled_kernels_settled()


if __name__ == "__main__":
    sys.exit(main())
