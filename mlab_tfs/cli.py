"""The ``mlab-tfs`` command."""

from __future__ import annotations

import argparse
import sys

from mlab_tfs.testing.exercises import PARTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlab-tfs", description="MLAB Transformers From Scratch")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="run the tests of your implementation and show your progress")
    check.add_argument("parts", nargs="*", choices=[[], *PARTS], metavar="PART",
                       help=f"which parts to check (default: all): {', '.join(PARTS)}")
    check.add_argument("--solution", action="store_true", help="check the solutions instead of your code")
    check.add_argument("--strict", action="store_true", help="exit with status 1 unless every exercise passes")
    check.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output too")

    args = parser.parse_args(argv)
    if args.command == "check":
        from mlab_tfs.testing.progress import check as run_check

        all_passed = run_check(args.parts, solution=args.solution, verbose=args.verbose)
        return 1 if args.strict and not all_passed else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
