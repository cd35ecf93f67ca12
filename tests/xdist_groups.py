"""A pytest plugin (imported by conftest.py): under pytest-xdist's ``--dist loadgroup`` (make test, make test-fast) each test
file's tests stay together on one worker, so that its module fixtures (a trained organism, a built model) are built
once; a test that marks a group of its own (``@pytest.mark.xdist_group("ci_run")``) keeps it.

The hook runs first among the ``pytest_collection_modifyitems`` hooks: xdist's worker reads the groups in its own
(it appends ``@<group>`` to each node id, which the scheduler groups by), and a conftest hook would otherwise run after
it, adding marks nobody reads.  tests/user/test_xdist_groups.py checks that the groups reach the scheduler.
"""

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
