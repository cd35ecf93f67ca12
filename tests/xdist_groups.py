"""A pytest plugin (imported by conftest.py) for pytest-xdist's ``--dist loadgroup`` (make test, make test-fast): which
tests must share a worker, and which go first.

Groups: the tests of a file that uses a module-scoped fixture (a trained organism, a built model) stay together on one
worker, so that the fixture is built once; a test that names a group of its own (``@pytest.mark.xdist_group("ci_run")``)
keeps it; every other test is a group of its own, free to run on either worker.  The hook runs first among the
``pytest_collection_modifyitems`` hooks: xdist's worker reads the groups in its own (it appends ``@<group>`` to each
node id, which the scheduler groups by), and a conftest hook would otherwise run after it, adding marks nobody reads.

Longest groups first: the scheduler hands groups out in the order of the collection (``--no-loadscope-reorder``;
xdist's own order is by number of tests), so the workers' collections are sorted by each group's seconds in the
runs before (pytest's cache, ``companion/test-seconds``, written at the end of each run), the groups with the most
tests first among those never timed.  A long group handed out last (the ci profile's notebooks, ~100 s) would
otherwise run alone at the end while the other worker idles.

tests/user/test_xdist_groups.py checks both where the scheduler sees them.
"""

from __future__ import annotations

import pytest

SECONDS = "companion/test-seconds"
"""The pytest cache key: {node id (without its group): seconds of setup, call and teardown in its last run}."""


SHARED_SCOPES = ("module", "class", "package")
"""Fixtures of these scopes are built once per worker that runs a test using them: such a test keeps to its file's
group (session fixtures are per worker whatever the grouping; the expensive ones name their group)."""


def _shares_a_fixture(item) -> bool:
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(d.scope in SHARED_SCOPES for ds in defs.values() for d in ds)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            nodeid = item.nodeid.split("@")[0]
            item.add_marker(pytest.mark.xdist_group(nodeid.split("::")[0] if _shares_a_fixture(item) else nodeid))


def _group(item) -> str:
    return item.get_closest_marker("xdist_group").args[0]


class _LongestFirst:
    """On each worker: its collection sorted by group, the longest first (the order must be the same on every
    worker, and it is: they read the same cache, written only when a run ends)."""

    @pytest.hookimpl(trylast=True)  # after -m deselected what does not run
    def pytest_collection_modifyitems(self, config, items) -> None:
        known: dict[str, float] = config.cache.get(SECONDS, {})
        seconds: dict[str, float] = {}
        count: dict[str, int] = {}
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            g = _group(item)
            seconds[g] = seconds.get(g, 0.0) + known.get(item.nodeid.split("@")[0], 0.0)
            count[g] = count.get(g, 0) + 1
            first.setdefault(g, i)
        items.sort(key=lambda item: (-seconds[_group(item)], -count[_group(item)], first[_group(item)]))


class _Timer:
    """On the process that reports (xdist's controller, or a run without workers): each test's seconds, written to
    the cache when the run ends, merged with those of the tests that did not run this time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        nodeid = report.nodeid.split("@")[0]
        self.seconds[nodeid] = self.seconds.get(nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session) -> None:
        cache = session.config.cache
        if self.seconds:
            cache.set(SECONDS, {**cache.get(SECONDS, {}), **{k: round(v, 2) for k, v in self.seconds.items()}})


def pytest_configure(config):
    if getattr(config, "cache", None) is None:  # -p no:cacheprovider: no seconds to read or write
        return
    if hasattr(config, "workerinput"):  # an xdist worker: it orders its collection
        config.pluginmanager.register(_LongestFirst(), "companion-longest-first")
    else:  # the controller, or a run without workers: it sees every test's report
        config.pluginmanager.register(_Timer(), "companion-test-seconds")
