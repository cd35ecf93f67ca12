"""The ``companion`` command: run notebooks, check figures, fork notebooks, manage the cache, preflight a profile,
regenerate the README's findings.

The command is the top of the package: it dispatches to every layer (the runner in ``backbone``, the doctor in
``models``, the README's findings in :mod:`companion.readme`) and nothing imports it, which is why it sits beside
the layers rather than inside ``backbone`` (the direction of every import is tested in ``tests/backbone/test_codegraph.py``).

A mistake on the command line (an unknown profile, notebook or parameter, a value of the wrong type) is one line
on stderr and exit status 2, never a traceback; a notebook that fails prints its failing cell and traceback and
exits 1; an interrupted run exits 130.  A reader that stops early (``companion profiles | head -1``) ends the
command quietly, with the status of a Unix tool killed by SIGPIPE (141).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


class UsageError(Exception):
    """A mistake on the command line, reported as one line."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the request was wrong", not "the code is broken"."""
    from companion.backbone.executor import ExecutorError
    from companion.backbone.params import ParameterError
    from companion.backbone.plan import RunnerError
    from companion.backbone.profiles import ProfileError

    return UsageError, ParameterError, ProfileError, RunnerError, ExecutorError


def _cmd_figures(a) -> int:
    from companion.backbone.dispatch import UnitsFailed
    from companion.backbone.runner import NotebookFailed, parse_param_args, run_notebooks

    overrides = parse_param_args(a.param or [])
    try:
        run_notebooks(
            a.profile, only=a.only or None, force=a.force, overrides=overrides, dry_run=a.dry_run, executor=a.executor
        )
    except (NotebookFailed, UnitsFailed) as e:  # the failing cell and its traceback are the message: print them whole
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_units(a) -> int:
    from companion.backbone.dispatch import units_report

    print("\n".join(units_report(a.profile, only=a.only or None, executor=a.executor)))
    return 0


def _cmd_check(a) -> int:
    from companion.backbone.figure_check import check_figures, format_table
    from companion.backbone.profiles import load_profile, project_root

    prof = load_profile(a.profile)
    root = project_root()
    try:
        diffs, missing, new, n = check_figures(root, prof.figures_dir, Path(a.fresh) if a.fresh else None, a.rev)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if n == 0 and not missing:
        print(f"no committed figures for profile {prof.name!r} under {prof.figures_dir} at {a.rev}; nothing to compare")
        return 0
    print(format_table(diffs, missing, new, n))
    return 1 if (any(not d.within_seed_spread for d in diffs) or missing) else 0


def _cmd_fork(a) -> int:
    from companion.backbone.fork import fork_notebook

    dest = fork_notebook(a.parent, a.name, profile=a.profile)
    print(f"created {dest}; run it with: make figures ONLY={dest.name[:2]}")
    return 0


def _cmd_cache(a) -> int:
    from companion.backbone.cache import default_cache

    cache = default_cache()
    if a.action == "ls":
        entries = cache.ls(a.kind)
        if not entries:
            print(f"cache at {cache.root} is empty")
            return 0
        total = 0
        for e in entries:
            total += e.size_bytes
            print(f"{e.kind:12s} {e.key}  {e.size_bytes / 1e6:8.1f} MB  {e.created}  {e.description}")
        print(f"{len(entries)} entries, {total / 1e6:.1f} MB, at {cache.root}")
    else:
        n = cache.clear(a.kind)
        print(f"removed {n} entries from {cache.root}")
    return 0


def _cmd_profiles(a) -> int:
    from companion.backbone.profiles import available_profiles, load_profile

    for name in available_profiles():
        p = load_profile(name)
        print(f"{name:9s} offline={str(p.offline).lower():5s} figures -> {p.figures_dir}\n          {p.description}")
    return 0


def _cmd_doctor(a) -> int:
    from companion.models.doctor import Check, diagnose, report

    checks = diagnose(a.profile)  # an unknown profile is a one-line error (main)
    if a.executor:
        from companion.backbone.executor import RESOURCE_CLASSES, resolve_executor
        from companion.backbone.profiles import load_profile
        from companion.backbone.slurm import slurm_checks

        settings = resolve_executor(load_profile(a.profile).executor, a.executor)
        if settings.kind == "slurm":
            checks += [Check(*c) for c in slurm_checks(settings, RESOURCE_CLASSES)]
    return report(checks)


def _cmd_readme(a) -> int:
    from companion.backbone.profiles import load_profile, project_root
    from companion.readme import ReadmeError, update_readme

    root = project_root()
    readme, figs = root / "README.md", root / load_profile("organism").figures_dir
    try:
        stale = update_readme(readme, figs, check=a.check)
    except ReadmeError as e:
        raise UsageError(str(e)) from None
    if a.check:
        print(
            f"{readme.name}: findings block {'differs from' if stale else 'matches'} {figs.relative_to(root)}/*.json"
            + (" (run `companion readme` to rewrite it)" if stale else "")
        )
        return 1 if stale else 0
    print(
        f"{readme.name}: findings block {'rewritten' if stale else 'already up to date'} from "
        f"{figs.relative_to(root)}/*.json"
    )
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``error: ...``) instead of a usage block."""

    def error(self, message: str):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="companion", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    f = sub.add_parser("figures", help="execute the numbered notebooks (skipping up-to-date ones)")
    f.add_argument("--profile", default=None, help="ci | organism | paper (default: $COMPANION_PROFILE or organism)")
    f.add_argument("--only", default="", help="comma-separated notebook numbers, stems or globs")
    f.add_argument("--force", action="store_true", help="run even if nothing changed")
    f.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="validate the parameters and say which notebooks would run and why; run nothing",
    )
    f.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="parameter override, validated against each selected notebook's parameter class",
    )
    f.add_argument(
        "--executor",
        default=None,
        metavar="local|processes|slurm|FILE.yaml",
        help="where the work units are built: local (each notebook builds its own), processes (worker processes "
        "here, one per core, build them all first), slurm (jobs submitted first), or a YAML file with an executor "
        "section (workers, partition, account, ...); default: the profile's",
    )
    f.set_defaults(func=_cmd_figures)

    u = sub.add_parser("units", help="the work units the notebooks need: built, missing, or their last run's state")
    u.add_argument("--profile", default=None)
    u.add_argument("--only", default="", help="comma-separated notebook numbers, stems or globs")
    u.add_argument("--executor", default=None, metavar="local|processes|slurm|FILE.yaml")
    u.set_defaults(func=_cmd_units)

    c = sub.add_parser("check-figures", help="compare fresh figure sidecars with the committed ones")
    c.add_argument("--profile", default=None)
    c.add_argument("--rev", default="HEAD", help="git revision holding the reference sidecars")
    c.add_argument("--fresh", default=None, help="folder of fresh sidecars (default: the profile's figures folder)")
    c.set_defaults(func=_cmd_check)

    k = sub.add_parser("fork", help="copy a notebook as a new numbered experiment with lineage")
    k.add_argument("parent", help="notebook number or stem, e.g. 01")
    k.add_argument("name", help="short name of the new experiment, e.g. my-idea")
    k.add_argument("--profile", default=None, help="profile whose parameters are recorded as the parent's")
    k.set_defaults(func=_cmd_fork)

    ca = sub.add_parser("cache", help="list or clear the on-disk cache ($COMPANION_CACHE)")
    ca.add_argument("action", choices=["ls", "clear"])
    ca.add_argument("--kind", default=None, help="only entries of this kind (organism, sae, activations, ...)")
    ca.set_defaults(func=_cmd_cache)

    pr = sub.add_parser("profiles", help="list the profiles and what they mean")
    pr.set_defaults(func=_cmd_profiles)

    dr = sub.add_parser("doctor", help="preflight: GPU, disk, Hub access and run time a profile needs")
    dr.add_argument("--profile", default="paper")
    dr.add_argument(
        "--executor",
        default=None,
        metavar="local|processes|slurm|FILE.yaml",
        help="also check the executor: for slurm, sbatch, accounting, the partition and its GPUs",
    )
    dr.set_defaults(func=_cmd_doctor)

    rd = sub.add_parser("readme", help="rewrite README.md's findings block from the committed organism sidecars")
    rd.add_argument("--check", action="store_true", help="only compare; exit status 1 when the block is out of date")
    rd.set_defaults(func=_cmd_readme)
    return ap


def main(argv: list[str] | None = None) -> int:
    errors = _user_errors()
    try:
        a = build_parser().parse_args(argv)
        status = a.func(a)
        sys.stdout.flush()  # a reader gone by now shows here, not in the interpreter's flush at exit
        return status
    except errors as e:  # one line per problem (a dry run reports every problem it finds)
        for problem in getattr(e, "problems", None) or [str(e)]:
            print(f"error: {' '.join(problem.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM during a run (the runner raises it as one)
        print("interrupted", file=sys.stderr)
        return 128 + int(getattr(e, "signum", 2))
    except BrokenPipeError:
        if not _stdout_closed():  # another pipe (a kernel's, a socket): a real error
            raise
        # The reader of our output stopped early (`companion profiles | head -1`): stop quietly, as Unix tools do
        # (they die of SIGPIPE: status 128 + 13), and point stdout at /dev/null so that the interpreter's last
        # flush of what is still buffered does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _stdout_closed() -> bool:
    """Whether stdout is a pipe that nobody reads any more (its poll reports an error or a hang-up)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no real stdout: cannot tell
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
