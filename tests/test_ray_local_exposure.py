"""What a local study's Ray instance exposes on the network, measured (not assumed).

``study.ray_runtime.init_ray`` starts a local instance with the dashboard off and no Ray
Client server. Ray 2.60 cannot bind a local instance to loopback: it replaces 127.0.0.1 by the
node's reachable IP (``ray._private.services.resolve_ip_for_localhost``) and its gRPC servers
(GCS, raylet, workers, driver) listen on every interface. What protects them is Ray's token
authentication, on by default: this test lists the listening sockets of the instance's
processes, checks that no HTTP dashboard, dashboard agent or client server is among them, and
that a process without the instance's token is refused. The README's security section says
what remains open."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from study.ray_runtime import init_ray

DASHBOARD_PORT, CLIENT_PORT = 8265, 10001


def _listening_inodes() -> dict[str, tuple[str, int]]:
    """inode -> (address, port) of every TCP socket in LISTEN state (Linux /proc)."""
    out = {}
    for fn, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(fn).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] != "0A":  # LISTEN
                continue
            hexip, hexport = parts[1].split(":")
            raw = bytes.fromhex(hexip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out[parts[9]] = (socket.inet_ntop(family, raw), int(hexport, 16))
    return out


def _listeners(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, process, address, port) for the listening sockets the given processes hold."""
    inodes = _listening_inodes()
    rows = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    rows.append((pid, Path(name).name, *inodes[target[8:-1]]))
        except OSError:
            continue
    return sorted(set(rows))


def _session_pids() -> set[int]:
    """This driver and every process started from the Ray session's directory."""
    session = ray._private.worker._global_node.get_session_dir_path()
    pids = {os.getpid()}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if session.encode() in Path(f"/proc/{p}/cmdline").read_bytes():
                    pids.add(int(p))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_local_ray_exposes_only_token_protected_grpc(tmp_path):
    assert not ray.is_initialized()
    assert init_ray(None, 1)
    try:
        pid = ray.get(ray.remote(lambda: os.getpid()).remote())
        rows = _listeners(_session_pids() | {pid})
        print("\n".join(f"{p:>7} {n:<24} {a}:{port}" for p, n, a, port in rows))
        ports = {port for *_, port in rows}
        assert rows, "no listening socket found: the listing is broken"
        assert DASHBOARD_PORT not in ports and CLIENT_PORT not in ports
        names = {n for _, n, _, _ in rows}
        assert not any("dashboard" in n or "agent_manager" in n for n in names), names

        # a process without the instance's token is refused
        address = ray.get_runtime_context().gcs_address
        wrong = tmp_path / "wrong_token"
        wrong.write_text(secrets.token_hex(32))
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong),
               "RAY_py_gcs_connect_timeout_s": "5"}
        env.pop("RAY_AUTH_TOKEN", None)
        code = f"import ray; ray.init(address='{address}', log_to_driver=False); print(ray.nodes())"
        bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
        assert bad.returncode != 0, bad.stdout[-1000:]
        assert "auth" in (bad.stderr + bad.stdout).lower(), bad.stderr[-2000:]
    finally:
        ray.shutdown()
