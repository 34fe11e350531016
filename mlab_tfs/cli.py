"""The ``mlab-tfs`` command.

``check`` is defined here; a part can add commands of its own (``mlab-tfs demo bert``...)
with a module ``mlab_tfs/<part>/commands.py`` that defines ``register(subparsers)``: it adds
its parsers and sets ``func`` on each (a function of the parsed args returning an exit code).
Demos go under ``mlab-tfs demo <part>``: add them to ``demo_subparsers(subparsers)``.

Errors. A user error ends the command with one line on stderr, ``mlab-tfs <cmd>: error:
<message>``, and exit status 2, without a traceback. User errors are: what argparse refuses
(a missing or malformed argument; the type helpers below refuse NaN, infinities and
out-of-range numbers there), and ValueError (CheckpointError included), TypeError and OSError
(a missing file, a folder in use, a full disk) raised while the command runs: they are how
the package reports bad input. MemoryError (a request larger than the machine: ``sample -n
10**12``) is one line too. Any other exception is a bug and keeps its traceback. Ctrl-C
prints ``mlab-tfs <cmd>: interrupted`` and exits 130. ``--debug`` (before or after the
command) or ``MLAB_TFS_DEBUG=1`` (or true/yes/on; 0, false, no, off and unset mean off) shows the traceback of a user error too.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable

from mlab_tfs.testing.exercises import COURSE_ORDER, PARTS


USER_ERRORS = (ValueError, TypeError, OSError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with one-line errors: ``<prog>: error: <message>``, exit status 2
    (argparse's own prints the usage first). Subcommand parsers get this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def number(kind: type = float, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Callable[[str], int | float]:
    """An argparse ``type=`` that reads an int or a finite float in [low, high] (an open end
    with low_open / high_open) and refuses anything else with a message naming the range."""
    lo = "(" if low_open or low is None else "["
    hi = ")" if high_open or high is None else "]"
    wanted = f"{'an integer' if kind is int else 'a finite number'}" + (
        f" in {lo}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{hi}"
        if low is not None or high is not None else "")

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low))) or \
                (high is not None and (value > high or (high_open and value == high))):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


def one_torch_thread() -> None:
    """One torch thread for a command that runs small models token by token (sample,
    filter-sample, demo bert), unless ``OMP_NUM_THREADS`` chooses. Their ops are small: on a
    2-core machine that other work keeps busy, a second thread made ``mlab-tfs sample`` take 52 s
    instead of 3.4 s (200 tokens; 25 s of CPU against 1.7 s), and GPT-2 small's decoding 20 s
    instead of 4.6 s."""
    if not os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(1)


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return " ".join(lines) or type(e).__name__


def _leaf_parsers(parser: argparse.ArgumentParser):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):  # aliases share one parser
            yield from _leaf_parsers(child)


def _describe(parser: argparse.ArgumentParser) -> None:
    """Every command's ``--help`` starts with what it does (its one-line help in the list of
    commands, where it has no description of its own), and every on/off switch says it is off
    unless given, as every option taking a value shows its default."""
    for action in parser._actions:
        if isinstance(action, argparse._StoreTrueAction) and action.help not in (None, argparse.SUPPRESS) \
                and "(default" not in action.help:
            action.help += " (default: off)"
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if child.description is None and helps.get(name):
                    child.description = helps[name][0].upper() + helps[name][1:] + "."
                _describe(child)


def _check(args: argparse.Namespace) -> int:
    from mlab_tfs.testing.progress import check

    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part {', '.join(unknown)}; the parts are {', '.join(PARTS)}")

    all_passed = check(args.parts, solution=args.solution, verbose=args.verbose, only=args.exercise)
    return 1 if args.strict and not all_passed else 0


def demo_subparsers(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The subcommands of ``mlab-tfs demo`` (one per part that has a demo), created once."""
    demo = subparsers.choices.get("demo")
    if demo is None:
        demo = subparsers.add_parser("demo", help="run a part's demo (see: mlab-tfs demo --help)",
                                     description="Run a part's demo; `mlab-tfs demo PART --help` says what it takes.")
        demo.set_defaults(_demos=demo.add_subparsers(dest="demo", required=True, metavar="PART"))
    return demo.get_default("_demos")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="mlab-tfs", description="MLAB Transformers From Scratch")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also MLAB_TFS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="run the tests of your implementation and show your progress")
    check.add_argument("parts", nargs="*", metavar="PART",
                       help=f"which parts to check (default: all): {', '.join(PARTS)}")
    check.add_argument("--exercise", action="append", metavar="NAME_OR_NUMBER",
                       help="run only this exercise's tests (repeatable): its number in the table, its name or its title, "
                            "e.g. --exercise 5 or --exercise attention (default: every exercise)")
    check.add_argument("--solution", action="store_true", help="check the solutions instead of your code")
    check.add_argument("--strict", action="store_true", help="exit with status 1 unless every exercise passes")
    check.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output too")
    check.set_defaults(func=_check)

    for part in COURSE_ORDER:
        name = f"mlab_tfs.{part}.commands"
        if importlib.util.find_spec(f"mlab_tfs.{part}") and importlib.util.find_spec(name):
            importlib.import_module(name).register(sub)
    _describe(parser)
    for leaf in _leaf_parsers(parser):  # every command knows its name and takes --debug
        leaf.set_defaults(_prog=leaf.prog)
        if "--debug" not in leaf._option_string_actions:
            leaf.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``mlab-tfs`` command; returns its exit status. A user error raises
    SystemExit(2) after one line on stderr (see the module docstring)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    prog = getattr(args, "_prog", parser.prog)
    if extra:  # named by the command they were given to, as its other errors are
        print(f"{prog}: error: unrecognized arguments: {' '.join(extra)}", file=sys.stderr)
        raise SystemExit(2)
    debug = args.debug or os.environ.get("MLAB_TFS_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except MemoryError as e:  # asked for more than the machine has (-n 10**12): not a bug of the code
        if debug:
            raise
        print(f"{prog}: error: out of memory ({type(e).__name__}{': ' + _one_line(e) if str(e) else ''}); "
              "ask for less", file=sys.stderr)
        raise SystemExit(2) from None
    except SystemExit as e:
        if isinstance(e.code, str):  # raise SystemExit("message"): a user error too
            if debug:
                raise
            print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    sys.exit(main())
