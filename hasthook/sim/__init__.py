"""A simulated FreeBSD HAST (hastd + hastctl) for tests of hooks and operator tools.

`SimNode` is one host (state directory, fake `hastctl`, hast.conf, hastd pid file,
worker processes titled like hastd's); `SimCluster` pairs two of them and plays hastd's
scenarios in simulated time (see driver.py for what follows FreeBSD 12.1's hastd and
for the failure injection). `hasthook.sim.hastctl.main` is the fake hastctl itself.
Names are loaded lazily so the fake hastctl, started once per call, does not pay for
the driver's imports.
"""

from __future__ import annotations

__all__ = ["ResourceSpec", "SimCluster", "SimError", "SimNode", "SplitBrainResult",
           "is_alive", "wait_for"]


def __getattr__(name: str) -> object:
    if name == "SimError":
        from hasthook.sim.core import SimError
        return SimError
    if name in __all__:
        from hasthook.sim import driver
        return getattr(driver, name)
    raise AttributeError(f"module 'hasthook.sim' has no attribute {name!r}")
