"""The `miniflow-course` command."""

import argparse
import sys
import tempfile
from pathlib import Path

from . import starter


def build_starter(args):
    root = Path(args.root)
    solution, target = root / "solutions" / "miniflow", root / "miniflow_starter" / "miniflow"
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            stale = starter.stale_files(solution, target, Path(scratch) / "miniflow")
        if stale:
            print(f"{target} is stale: {', '.join(stale)}; run `miniflow-course build-starter`")
            return 1
        print(f"{target} is up to date")
        return 0
    starter.build_starter(solution, target)
    print(f"wrote {target} from {solution}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="miniflow-course", description=__doc__)
    parser.add_argument("--root", default=".", help="the course root (default: the current folder)")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("build-starter", help="regenerate miniflow_starter/ from solutions/")
    command.add_argument("--check", action="store_true", help="only report whether it is stale")
    command.set_defaults(run=build_starter)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
