"""Start the loopback Hub with the paper profile's stand-ins and keep it running (for running the rehearsal by hand):

    .venv/bin/python -m tests.rehearsal.serve

It prints the environment to export and the command to run; stop it with Ctrl-C.
"""

from __future__ import annotations

import time

from tests.rehearsal.hub import LoopbackHub
from tests.rehearsal.world import ACCEPTED_TOKEN, populate


def main() -> None:
    hub = LoopbackHub().start()
    ids = populate(hub)
    print(f"loopback Hub at {hub.endpoint}: {len(ids.models)} models, {len(ids.datasets)} datasets")
    print(f"  export COMPANION_REHEARSAL_HUB={hub.endpoint} HF_TOKEN={ACCEPTED_TOKEN} HF_HOME=$(mktemp -d)")
    print("  make figures PROFILE=rehearsal")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
