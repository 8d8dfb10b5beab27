"""Starting (or joining) Ray so that a local instance talks to nothing outside 127.0.0.0/8.

What Ray reaches out to unless told not to (read in ray 2.60's source): the usage-stats
reporter (it POSTs to usage-stats.ray.io and, to name the cloud, GETs 169.254.169.254 and
metadata.google.internal) — off with RAY_USAGE_STATS_ENABLED=0; the dashboard and its agents'
HTTP servers — not started (`include_dashboard=False`); the node address, which Ray finds by
"connecting" a UDP socket to 8.8.8.8 and then binds its services to (this machine's outward
address, not loopback) — for a local instance Ray's single-machine mode instead
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which every Ray process started here inherits, makes
the node address 127.0.0.1 without asking), and `_node_ip_address="127.0.0.1"`; the TPU probe of
GCE metadata runs only where /dev/accel* or a TPU VFIO group exists. And one that no setting
turns off: with `include_dashboard=False` Ray still starts its dashboard process with the
`UsageStatsHead` module alone, whose `run()` asks the cloud metadata addresses for the provider
BEFORE it checks whether usage stats are enabled. Those probes go through `requests`, which
honours proxy variables: every process Ray starts here (they are spawned during `ray.init` and
inherit its environment) gets HTTP(S)_PROXY pointing at a closed loopback port, with NO_PROXY
for loopback, so such a request fails at 127.0.0.1 without even a DNS query. Ray Serve's own HTTP
proxy is not started: bushu's front serves HTTP. The test `test_ray_connects_only_to_loopback`
runs all of it under `strace -f -e trace=connect` and checks every address.
"""

from __future__ import annotations

import os
from typing import Any

from bushu.errors import BushuError

#: Only for the processes a local instance starts (restored in this one after `ray.init`).
NO_EGRESS = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
             "NO_PROXY": "127.0.0.1,localhost,::1"}
NO_EGRESS |= {k.lower(): v for k, v in NO_EGRESS.items()}

SAFE_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    "RAY_AUTH_MODE": "disabled",  # no token file written to ~/.ray for a throwaway local instance
}


def import_ray() -> Any:
    try:
        import ray
        from ray import serve  # noqa: F401
    except ImportError:
        raise BushuError("--ray needs Ray Serve: pip install 'bushu[ray]'") from None
    return ray


def start(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address`, or start a local instance bound to 127.0.0.1; return
    True if this process started it (and so shuts it down at exit)."""
    for key, value in SAFE_ENV.items():
        os.environ.setdefault(key, value)
    if not address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    if ray.is_initialized():
        return False
    if not address:  # read at import: set it too where ray was imported before this call
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] not in ("0", "false", "False")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **options)
        return False
    saved = {k: os.environ.get(k) for k in NO_EGRESS}
    os.environ.update(NO_EGRESS)
    try:
        ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **options)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return True


def start_serve() -> None:
    """Serve's controller, without its HTTP proxy (bushu's front is the HTTP server)."""
    from ray import serve

    serve.start(proxy_location="Disabled")


def stop() -> None:
    """Shut down what `start` started (Serve's applications, then the local instance)."""
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()
