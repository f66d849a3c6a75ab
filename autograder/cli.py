"""The `miniflow-course` command: instructor tools for the miniflow course."""

import argparse
import sys
import tempfile
from pathlib import Path

from . import grade, release, starter


def starter_paths(root):
    return root / "solutions" / "miniflow", root / "miniflow_starter" / "miniflow"


def stale_starter(root, scratch):
    solution, target = starter_paths(root)
    return starter.stale_files(solution, target, Path(scratch) / "miniflow")


def build_starter(root):
    solution, target = starter_paths(root)
    starter.build_starter(solution, target)
    return target


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


def grade_submissions(args):
    """Grade SUBMISSIONS (or, with --samples, the bundled samples) and print the grade table."""
    if bool(args.submissions) == args.samples:
        print("give either SUBMISSIONS or --samples", file=sys.stderr)
        return 2
    settings = grade.Settings(
        workers=args.workers,
        cell_timeout=args.cell_timeout,
        student_timeout=args.student_timeout,
        data=args.data,
        sandbox=not args.no_sandbox,
    )
    for note in grade.run_notes(settings):  # once for the run, not in every student's row
        print(f"WARNING: {note}", file=sys.stderr)
    try:
        shard = args.shard and grade.Shard.parse(args.shard)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    options = {"cluster": args.cluster, "shard": shard, "regrade": args.regrade}
    try:
        course = grade.Course(args.root)
        if args.samples:
            rows = grade.grade_samples(args.out, course, settings, **options)
        else:
            rows = grade.grade(args.submissions, args.out, course, settings, **options)
    except grade.GradingError as error:
        print(f"cannot grade: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the students graded so far are kept ({Path(args.out) / 'records'}); "
            "run the same command again to grade the others",
            file=sys.stderr,
        )
        return 130
    print(grade.format_table(rows))
    notes = ", notes.txt" if grade.run_notes(settings) else ""
    print(f"wrote {Path(args.out) / 'grades.csv'}, tests.csv{notes}, feedback/ and logs/")
    return 0


def add_grade_command(commands):
    defaults = grade.Settings()
    parser = commands.add_parser(
        "grade", help="autograde a folder of submissions with nbgrader; write grades, tests and feedback"
    )
    parser.add_argument("submissions", nargs="?", help="a folder with one folder per student")
    parser.add_argument("--samples", action="store_true", help="grade the bundled sample submissions instead")
    parser.add_argument("--out", required=True, help="where grades.csv, tests.csv, feedback/ and logs/ go")
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="students graded at once (default: %(default)s, the cores)",
    )
    parser.add_argument(
        "--cell-timeout",
        type=int,
        help="seconds a cell may run (default: Execute.timeout in nbgrader_config.py)",
    )
    parser.add_argument(
        "--student-timeout",
        type=float,
        default=defaults.student_timeout,
        help="seconds for one student's whole grading (default: %(default)g: five notebooks of 600 s)",
    )
    parser.add_argument(
        "--data", default=defaults.data, help="the MNIST folder kernels may read (default: $MINIFLOW_DATA)"
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code without bubblewrap, with resource limits only (it can read the "
        "solutions and use the network); without it, grading stops if the sandbox cannot start",
    )
    parser.add_argument(
        "--cluster",
        help="grade on Dask: a scheduler's address (tcp://HOST:PORT, tls://...), local[:N] for N worker "
        "processes on this machine, or a cluster named in Dask's configuration (see the README)",
    )
    parser.add_argument(
        "--shard",
        metavar="INDEX/COUNT",
        help="grade only every COUNT-th student from the INDEX-th, into OUT/gradebook.db; "
        "`miniflow-course merge` combines the shards",
    )
    parser.add_argument(
        "--regrade",
        action="store_true",
        help="grade every student again, even those OUT/records/ says were graded from the same files",
    )
    parser.set_defaults(run=grade_submissions)


def merge_shards(args):
    """Merge shard OUTs into the course's gradebook and OUT; exit status 1 when students are missing."""
    try:
        rows, missing, missing_shards = grade.merge(args.shards, args.out, grade.Course(args.root))
    except grade.GradingError as error:
        print(f"cannot merge: {error}", file=sys.stderr)
        return 1
    print(grade.format_table(rows))
    print(f"wrote {Path(args.out) / 'grades.csv'}, tests.csv, feedback/ and logs/")
    if missing_shards:
        print(f"missing shards: {', '.join(map(str, missing_shards))}", file=sys.stderr)
    if missing:
        print(f"not graded by any shard ({len(missing)}): {', '.join(missing)}", file=sys.stderr)
    return 1 if missing else 0


def add_merge_command(commands):
    parser = commands.add_parser(
        "merge", help="combine the OUT folders of `grade --shard` runs into the course's gradebook and OUT"
    )
    parser.add_argument("shards", nargs="+", metavar="SHARD_OUT", help="the OUT of each shard")
    parser.add_argument("--out", required=True, help="where the merged grades.csv, tests.csv, ... go")
    parser.set_defaults(run=merge_shards)


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
            check_or_build(
                f"release/{release.ASSIGNMENT}", release.build_release, release.stale_release_files
            ),
        ),
    ]:
        subparser = commands.add_parser(command, help=help_text)
        subparser.add_argument("--check", action="store_true", help="only report whether it is stale")
        subparser.set_defaults(run=run)
    add_grade_command(commands)
    add_merge_command(commands)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
