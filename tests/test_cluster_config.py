"""Offline validation of the cluster files (cluster.yaml, cluster-onprem.yaml) and the head
setup script: Ray's own ``prepare_config`` + ``validate_config`` (what ``ray up`` runs before
it contacts the cloud), the installed versions against pyproject.toml's pins, the ports
opened to the world, token authentication, and secret literals. No network, no credentials.
"""
from __future__ import annotations

import ast
import copy
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import ray
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = ["cluster.yaml", "cluster-onprem.yaml"]
SETUP_HEAD = ROOT / "cluster" / "setup_head.sh"
WORLD = {"0.0.0.0/0", "::/0"}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def prepared(name: str) -> dict:
    """What ``ray up`` builds before contacting the provider: defaults from the provider's
    defaults.yaml (AWS) or the on-prem node type (local), merged setup commands, validated
    against Ray's JSON schema."""
    cfg = prepare_config(copy.deepcopy(load(name)))
    validate_config(cfg)
    if cfg["provider"]["type"] == "local":
        from ray.autoscaler._private.local.config import bootstrap_local
        cfg = bootstrap_local(cfg)
    return cfg


def project_pins() -> dict[str, str]:
    """Exact (==) pins of pyproject.toml's dependencies: canonical name -> version."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = {}
    for dep in data["project"]["dependencies"]:
        req = Requirement(dep)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[canonicalize_name(req.name)] = exact[0]
    return pins


def installed_pins(commands: list[str]) -> dict[str, str]:
    """Every ``NAME==VERSION`` a ``pip install`` in these shell commands asks for."""
    found: dict[str, str] = {}
    for cmd in commands:
        lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        parts, cur = [], []
        for tok in lex:
            if tok in ("&&", "||", ";", "|", "&"):
                parts.append(cur)
                cur = []
            else:
                cur.append(tok)
        parts.append(cur)
        for tokens in parts:
            pips = [i for i, t in enumerate(tokens) if t.endswith("pip") or t.endswith("/pip")]
            if not pips or "install" not in tokens[pips[0]:]:
                continue
            for tok in tokens[pips[0] + 1:]:
                if tok.startswith("-") or "==" not in tok:
                    continue
                try:
                    req = Requirement(tok)
                except InvalidRequirement:
                    continue
                name = canonicalize_name(req.name)
                for s in req.specifier:
                    if s.operator == "==":
                        if name in found and found[name] != s.version:
                            raise AssertionError(f"{name} installed at two versions: {found[name]}, {s.version}")
                        found[name] = s.version
    return found


def pin_drift(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    problems = []
    for name, version in pins.items():
        if name not in installed:
            problems.append(f"{name}=={version} is pinned in pyproject.toml but not installed")
        elif installed[name] != version:
            problems.append(f"{name}: pyproject pins {version}, the cluster installs {installed[name]}")
    return problems


def setups(cfg: dict) -> dict[str, list[str]]:
    """The commands that prepare each kind of node (prepare_config merged setup_commands in)."""
    return {"head": cfg["head_setup_commands"], "worker": cfg["worker_setup_commands"]}


def start_commands(cfg: dict) -> list[str]:
    return list(cfg["head_start_ray_commands"]) + list(cfg["worker_start_ray_commands"])


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_ray_validates_the_cluster_file(name):
    cfg = prepared(name)
    assert cfg["cluster_name"].startswith("vac-study")
    assert cfg["head_node_type"] in cfg["available_node_types"]


def test_validation_really_rejects_a_broken_file():
    import jsonschema
    cfg = load("cluster.yaml")
    cfg["available_node_types"]["gpu_worker"]["resources"]["GPU"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(cfg))
    cfg = load("cluster.yaml")
    cfg["head_node_type"] = "no_such_type"
    with pytest.raises((ValueError, KeyError, AssertionError)):
        validate_config(prepare_config(cfg))


def test_aws_nodes_head_without_gpus_workers_with_declared_resources():
    cfg = prepared("cluster.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU") == 0
    assert head["max_workers"] == 0
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    assert workers
    for name, w in workers.items():
        res = w["resources"]
        assert res["GPU"] >= 1 and res["CPU"] >= 1 and res["memory"] > 0, name
        assert w["max_workers"] >= 1 and w["min_workers"] <= w["max_workers"], name
        assert w["node_config"]["InstanceType"].split(".")[0][0] in "gp", name  # a GPU family
    assert sum(w["min_workers"] for w in workers.values()) <= cfg["max_workers"]


def test_image_matches_the_pinned_ray_and_python():
    cfg = load("cluster.yaml")
    pins = project_pins()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    py = re.search(r"(\d+)\.(\d+)", requires).groups()
    assert cfg["docker"]["image"] == f"rayproject/ray:{pins['ray']}-py{py[0]}{py[1]}-gpu"
    assert "ray-ml" not in yaml.safe_dump(cfg)  # no longer published


# --------------------------------------------------------------------------- versions
@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_setup_installs_exactly_the_project_pins(name):
    cfg = prepared(name)
    pins = project_pins()
    assert {"torch", "torchaudio", "ray", "optuna", "mlflow", "pyarrow"} <= set(pins)
    for kind, commands in setups(cfg).items():
        installed = installed_pins(commands)
        assert pin_drift(pins, installed) == [], (name, kind)
        assert any(re.search(r"pip install .*-e ~/vac-study\b", c) for c in commands), (name, kind)
        # the PostgreSQL driver SQLAlchemy picks for postgresql:// URLs (Optuna, MLflow)
        assert "psycopg" in installed_pins(commands), (name, kind)


def test_pin_drift_is_detected():
    cfg = prepared("cluster.yaml")
    pins = project_pins()
    commands = [c.replace(f"torch=={pins['torch']}", "torch==2.10.0") for c in setups(cfg)["worker"]]
    drift = pin_drift(pins, installed_pins(commands))
    assert drift == [f"torch: pyproject pins {pins['torch']}, the cluster installs 2.10.0"]
    commands = [c.replace(f'"mlflow=={pins["mlflow"]}"', "") for c in setups(cfg)["head"]]
    assert any(d.startswith("mlflow==") for d in pin_drift(pins, installed_pins(commands)))


# --------------------------------------------------------------------------- network
def ray_default_aws_rules() -> list[dict]:
    """Ray's own default inbound rules for the security group it creates, read from Ray's
    source (ray.autoscaler._private.aws.config imports boto3, which the tests do not need)."""
    src = Path(ray.__file__).parent / "autoscaler" / "_private" / "aws" / "config.py"
    tree = ast.parse(src.read_text())
    rules = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "_create_default_ssh_inbound_rules":
            ret = [n for n in ast.walk(node) if isinstance(n, ast.Return)][0]
            rules += ast.literal_eval(ret.value)
    assert rules, "Ray's default SSH rule not found: check the security test against this Ray"
    return rules


def world_open_ports(rules: list[dict]) -> list[tuple]:
    out = []
    for r in rules:
        cidrs = {x.get("CidrIp") for x in r.get("IpRanges", [])} | {x.get("CidrIpv6") for x in r.get("Ipv6Ranges", [])}
        if cidrs & WORLD:
            out.append((r.get("IpProtocol"), r.get("FromPort"), r.get("ToPort")))
    return out


def test_only_ssh_is_open_to_the_world():
    cfg = prepared("cluster.yaml")
    sg = cfg["provider"]["security_group"]
    assert sg["GroupName"]
    rules = ray_default_aws_rules() + list(sg.get("IpPermissions", []))
    assert world_open_ports(rules) == [("tcp", 22, 22)]
    # no node type brings its own group (which would bypass the rules above)
    for t in cfg["available_node_types"].values():
        assert "SecurityGroupIds" not in t["node_config"]
    # and the check itself sees an opened dashboard
    bad = rules + [{"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    assert ("tcp", 8265, 8265) in world_open_ports(bad)


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_services_listen_on_loopback_only(name):
    cfg = prepared(name)
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "ray start --head" in head_start
    assert "--dashboard-host=127.0.0.1" in head_start
    everything = yaml.safe_dump(cfg)
    assert "0.0.0.0" not in everything and "--ray-client-server-port" not in everything
    assert any("setup_head.sh start" in c for c in cfg["head_setup_commands"])


def test_head_services_bind_loopback():
    text = SETUP_HEAD.read_text()
    assert "0.0.0.0" not in text and "listen_addresses = '*'" not in text
    assert "listen_addresses = '127.0.0.1'" in text
    assert re.search(r"mlflow server --host 127\.0\.0\.1\b", text)
    assert "--serve-artifacts" in text and "--artifacts-destination" in text
    assert "scram-sha-256" in text  # password auth, even on loopback
    assert "postgresql://$PG_USER@127.0.0.1" in text  # URL without password (~/.pgpass)


# --------------------------------------------------------------------------- auth + secrets
@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_token_auth_on_every_node(name):
    cfg = prepared(name)
    for cmd in start_commands(cfg):
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd and "RAY_AUTH_TOKEN_PATH=" in cmd, cmd
    token_path = re.search(r"RAY_AUTH_TOKEN_PATH=\$HOME/(\S+)", " ".join(start_commands(cfg))).group(1)
    mount = token_path.split("/")[0]
    local = cfg["file_mounts"][f"~/{mount}"]
    local_path = Path(os.path.expanduser(local)).resolve()
    assert not local_path.is_relative_to(ROOT), "the token directory must be outside the repository"
    assert not local.startswith(".")
    # the driver and CLI shells (ray job submit, ray exec) get the same settings
    assert any("RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in cfg["setup_commands"])


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_project_sync_excludes_local_state(name):
    cfg = load(name)
    assert cfg["file_mounts"]["~/vac-study"] == "."
    excl = set(cfg["rsync_exclude"])
    assert {".venv", "runs", "*.db"} <= excl


SECRET_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret key": r"(?i)aws_secret_access_key\s*[:=]\s*\S+",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "hex token (a Ray token is 64 hex digits)": r"\b[0-9a-f]{40,}\b",
    "password in a URL": r"[a-z+]+://[^/\s:@]+:[^/\s@$]+@",
    "password literal": r"(?i)\b(password|passwd|secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9+/_\-]{12,}",
}


def secrets_in(text: str) -> list[str]:
    return [name for name, pat in SECRET_PATTERNS.items() if re.search(pat, text)]


def test_no_secret_literals_in_cluster_files():
    paths = [ROOT / n for n in CLUSTER_FILES] + [SETUP_HEAD]
    doc = ROOT / "docs" / "cluster.md"
    if doc.exists():
        paths.append(doc)
    for p in paths:
        assert secrets_in(p.read_text()) == [], p.name


def test_secret_scan_finds_real_secrets():
    import secrets as _secrets
    from ray._private.authentication.authentication_token_generator import generate_new_authentication_token
    tok = generate_new_authentication_token()
    assert secrets_in(f"RAY_AUTH_TOKEN={tok}")
    assert secrets_in("postgresql://vac:" + _secrets.token_urlsafe(16) + "@127.0.0.1:5432/optuna")
    assert secrets_in("aws_access_key_id = AKIA" + "ABCDEFGHIJKLMNOP")
    assert secrets_in("password: " + _secrets.token_urlsafe(16))
    assert secrets_in(load("cluster.yaml").__repr__()) == []


def test_setup_head_script_parses():
    import subprocess
    proc = subprocess.run(["bash", "-n", str(SETUP_HEAD)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.access(SETUP_HEAD, os.X_OK)
