"""Starting Ray the one way this project does: ``init_ray(address, num_cpus) -> bool``.

No address: a fresh local instance bound to 127.0.0.1 (``address="local"``, so a cluster
that happens to run on this machine is never joined by accident), limited to ``num_cpus``
when given. An address (``auto``, ``ray://...``, ``HOST:PORT``) joins that cluster, whose
size is its own. Dashboard off, workers' logs not forwarded to the driver. Ray already
initialised in this process: left as it is. A local instance started with ``record`` (a file
path) is recorded there (study.ray_leftovers), so that what a killed driver leaves of it can be
found and stopped later.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def init_ray(address: Optional[str], num_cpus: Optional[int], record: Optional[Path] = None) -> bool:
    """Start or join Ray; True when this call started it (the caller then shuts it down).

    Raises ValueError for ``num_cpus`` with an ``address`` (a cluster's size is its own) or
    ``num_cpus < 1``."""
    import ray

    if num_cpus is not None and num_cpus < 1:
        raise ValueError(f"num_cpus must be >= 1, got {num_cpus}")
    if address and num_cpus is not None:
        raise ValueError("num_cpus applies to a local Ray instance only, not to --address")
    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": False}
    if address:
        ray.init(address=address, **options)
    else:
        ctx = ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=num_cpus, **options)
        if record is not None:
            from study.ray_leftovers import record_session
            record_session(Path(record), ctx.address_info["session_dir"])
    return True
