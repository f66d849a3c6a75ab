"""The `miniflow-course` command: instructor tools for the miniflow course."""

import argparse
import sys
import tempfile
from pathlib import Path

from . import release, starter


def starter_paths(root):
    return root / "solutions" / "miniflow", root / "miniflow_starter" / "miniflow"


def stale_starter(root, scratch):
    solution, target = starter_paths(root)
    return starter.stale_files(solution, target, Path(scratch) / "miniflow")


def build_starter(root):
    solution, target = starter_paths(root)
    starter.build_starter(solution, target)
    return target


def build_release(root):
    return release.build_release(root)


def check_or_build(name, build, find_stale):
    """A command that regenerates `name`, or with --check only reports whether it is stale."""

    def run(args):
        root = Path(args.root)
        if not args.check:
            print(f"wrote {build(root)}")
            return 0
        with tempfile.TemporaryDirectory() as scratch:
            stale = find_stale(root, scratch)
        if stale:
            print(f"{name} is stale ({', '.join(stale)}); run `miniflow-course {args.command}`")
            return 1
        print(f"{name} is up to date")
        return 0

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(prog="miniflow-course", description=__doc__)
    parser.add_argument("--root", default=".", help="the course root (default: the current folder)")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, help_text, run in [
        (
            "build-starter",
            "regenerate miniflow_starter/ from solutions/",
            check_or_build("miniflow_starter/miniflow", build_starter, stale_starter),
        ),
        (
            "build-release",
            "regenerate the starter, then release/ with nbgrader generate_assignment",
            check_or_build(f"release/{release.ASSIGNMENT}", build_release, release.stale_release_files),
        ),
    ]:
        subparser = commands.add_parser(command, help=help_text)
        subparser.add_argument("--check", action="store_true", help="only report whether it is stale")
        subparser.set_defaults(run=run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
