"""The `vivid` command line. Each subcommand lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

# Modules under vivid.cli (or elsewhere) that define `register(subparsers) -> None`. Each registered parser
# sets `func=handler`, a callable taking the parsed args and returning an exit code.
COMMAND_MODULES = [
    "vivid.cli.init_tiny",
    "vivid.cli.edit",
    "vivid.cli.mask",
    "vivid.cli.keyframe",
    "vivid.cli.data",
    "vivid.cli.train",
    "vivid.cli.export",
    "vivid.cli.eval",
    "vivid.cli.demo",
    "vivid.cli.app",
    "vivid.cli.flops",
]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or not action.option_strings or default in (None, argparse.SUPPRESS)
                or isinstance(default, bool)):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
        return f"{text} (default: {shown})" if text else f"default: {shown}"


class HelpParser(argparse.ArgumentParser):
    """The CLI's parser: subcommands' parsers are of this class too, so every help shows its defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


class CLIError(Exception):
    """An error to print as one line (no traceback) before exiting with status 2."""


BUG_REPORT = ("this is a bug in vivid, not a problem with your input: please report it with the traceback above "
              "and the command you ran")


def _drop_accelerator_guess(record: logging.LogRecord) -> bool:
    """DeepSpeed's "Setting accelerator to CPU ..." warning, printed on import wherever no GPU is found (every
    command that loads accelerate): not news to a user without a GPU, and noise in every command's output."""
    return not str(record.msg).startswith("Setting accelerator to CPU")


def build_parser() -> argparse.ArgumentParser:
    parser = HelpParser(prog="vivid", description="VIVID video local editing: add, modify, delete.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        logging.getLogger("DeepSpeed").addFilter(_drop_accelerator_guess)  # the logger DeepSpeed makes on import
    try:
        return int(args.func(args) or 0)
    # a user's input: a bad file, value or config key (ValueError: MediaError, ConfigError, EditInputError, ...),
    # a missing file, a full disk, the hub not reachable (OSError)
    except (CLIError, OSError, ValueError) as err:
        if args.verbose:
            raise
        print(f"vivid {args.command}: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # an edit's says how to resume it
        print(f"vivid {args.command}: interrupted" + (f": {err}" if str(err) else ""), file=sys.stderr)
        return 130
    except Exception:
        if args.verbose:
            raise
        traceback.print_exc()
        print(f"vivid {args.command}: unexpected error: {BUG_REPORT}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
