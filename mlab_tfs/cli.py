"""The ``mlab-tfs`` command.

``check`` is defined here; a part can add commands of its own (``mlab-tfs demo bert``...)
with a module ``mlab_tfs/<part>/commands.py`` that defines ``register(subparsers)``: it adds
its parsers and sets ``func`` on each (a function of the parsed args returning an exit code).
Demos go under ``mlab-tfs demo <part>``: add them to ``demo_subparsers(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from mlab_tfs.testing.exercises import COURSE_ORDER, PARTS


def _check(args: argparse.Namespace) -> int:
    from mlab_tfs.testing.progress import check

    all_passed = check(args.parts, solution=args.solution, verbose=args.verbose)
    return 1 if args.strict and not all_passed else 0


def demo_subparsers(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The subcommands of ``mlab-tfs demo`` (one per part that has a demo), created once."""
    demo = subparsers.choices.get("demo")
    if demo is None:
        demo = subparsers.add_parser("demo", help="run a part's demo (see: mlab-tfs demo --help)")
        demo.set_defaults(_demos=demo.add_subparsers(dest="demo", required=True, metavar="PART"))
    return demo.get_default("_demos")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlab-tfs", description="MLAB Transformers From Scratch")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="run the tests of your implementation and show your progress")
    check.add_argument("parts", nargs="*", metavar="PART",
                       help=f"which parts to check (default: all): {', '.join(PARTS)}")
    check.add_argument("--solution", action="store_true", help="check the solutions instead of your code")
    check.add_argument("--strict", action="store_true", help="exit with status 1 unless every exercise passes")
    check.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output too")
    check.set_defaults(func=_check)

    for part in COURSE_ORDER:
        name = f"mlab_tfs.{part}.commands"
        if importlib.util.find_spec(f"mlab_tfs.{part}") and importlib.util.find_spec(name):
            importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        unknown = [p for p in args.parts if p not in PARTS]
        if unknown:
            parser.error(f"unknown part {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
