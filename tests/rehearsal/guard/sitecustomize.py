"""Installed by PYTHONPATH in the rehearsal's notebook kernels: refuse and record non-loopback connections."""

import os
import sys

if os.environ.get("COMPANION_NETGUARD_LOG"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        import netguard

        netguard.install()
    finally:
        sys.path.pop(0)
