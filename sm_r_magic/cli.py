"""`sm-r-magic ...` commands. Each subcommand lives in its own module and registers itself here."""

import argparse
import importlib
import sys

from .errors import SmRMagicError

# subcommand -> module with register(subparsers) adding a parser whose `func(args)` does the work
SUBCOMMANDS = {
    "image": "sm_r_magic.image",
    "install-kernel": "sm_r_magic.kernel_install",
    "jobs": "sm_r_magic.cli_jobs",
}


def build_parser():
    parser = argparse.ArgumentParser(prog="sm-r-magic", description="Run R code on Amazon SageMaker.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # a feature not installed in this version
        module.register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except SmRMagicError as exc:
        print(f"sm-r-magic: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
