"""The container: the Dockerfile and compose.yaml agree with the CLI, the settings and the package; the
build context (after .dockerignore) builds the package; where a container runtime runs, the image builds and
serves its probes (skipped, saying so, where none does)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml
from distillguard.serving.config import (
    ANALYST_KEYS_ENV,
    API_KEYS_ENV,
    ServeSettings,
    load_settings,
)
from distillguard.serving.settings_env import env_var

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in dockerfile.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def _stages(dockerfile: str) -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for instr, args in _instructions(dockerfile):
        if instr == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else f"stage{len(stages)}"
            stages[current] = []
        if current is not None:
            stages[current].append((instr, args))
    return stages


def _serve_options() -> tuple[set[str], dict[str, str]]:
    """The option names `distillguard serve` accepts, and the environment variables its options read."""
    import typer.main

    from distillguard.cli import app

    serve = typer.main.get_command(app).commands["serve"]
    names = {o for p in serve.params for o in p.opts}
    envvars = {p.envvar: p.name for p in serve.params if getattr(p, "envvar", None)}
    return names, envvars


def _option_value(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _known_env_names() -> set[str]:
    _, envvars = _serve_options()
    return {env_var(f) for f in ServeSettings.model_fields} | {API_KEYS_ENV, ANALYST_KEYS_ENV} | set(envvars)


DOCKERFILE = (ROOT / "Dockerfile").read_text()
STAGES = _stages(DOCKERFILE)
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_dockerfile_installs_the_project_from_its_files_on_the_cpu_torch_pin():
    args = dict(a.split("=", 1) for i, a in _instructions(DOCKERFILE) if i == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    final = list(STAGES)[-1]
    assert final == "distillguard", "the default build target is the service"
    steps = STAGES[final]
    torch_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert torch_pin == f"torch=={args['TORCH_VERSION']}", "Dockerfile TORCH_VERSION must equal pyproject's pin"
    assert any(i == "RUN" and "--index-url" in a and "torch==${TORCH_VERSION}" in a for i, a in steps)
    copied = {src for i, a in steps if i == "COPY" for src in a.split()[:-1]}
    folders = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    assert folders | {"pyproject.toml", "README.md"} <= copied, "every package folder must be copied"
    assert any(i == "RUN" and "pip install --no-cache-dir ." in a for i, a in steps)
    # a non-root user runs it; the probes and the default command are the real ones
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = next(a for i, a in steps if i == "HEALTHCHECK")
    assert "/healthz" in health and "readyz" not in health
    entry = json.loads(next(a for i, a in steps if i == "ENTRYPOINT"))
    cmd = json.loads(next(a for i, a in steps if i == "CMD"))
    assert entry[-1] == "distillguard" and cmd[0] == "serve"
    names, _ = _serve_options()
    assert {c for c in cmd if c.startswith("--")} <= names
    port = _option_value(cmd, "--port")
    assert f":{port}/healthz" in health and any(i == "EXPOSE" and a == port for i, a in steps)
    assert _option_value(cmd, "--host") == "0.0.0.0"
    env = " ".join(a for i, a in steps if i == "ENV")
    assert "HF_HUB_OFFLINE=1" in env
    assert set(re.findall(r"(DISTILLGUARD_\w+)=", env)) <= _known_env_names()


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `rel` (or a folder above it) out of the build context."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for pattern in patterns:
        for path in prefixes:
            if fnmatch.fnmatchcase(path, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(path.split("/")[-1], pattern[3:]):
                return True
    return False


def test_the_build_context_builds_the_package(tmp_path):
    """What the Dockerfile copies, after .dockerignore, is enough to build the wheel, templates included."""
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    context = tmp_path / "src"
    copies = [a.split() for i, a in STAGES["distillguard"] if i == "COPY"]
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for *sources, _dest in copies:
        for src in sources:
            for rel in tracked:
                if (rel == src or rel.startswith(src + "/")) and not _dockerignored(rel, patterns):
                    (context / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / rel, context / rel)
    for needed in ("pyproject.toml", "README.md", "serving/app.py"):
        assert (context / needed).exists(), f"{needed} is left out of the image's build context"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "wheel"), str(context)], check=False, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    names = zipfile.ZipFile(next((tmp_path / "wheel").glob("distillguard-*.whl"))).namelist()
    assert "distillguard/serving/app.py" in names and "distillguard/workbench/__init__.py" in names
    assert any(n.startswith("distillguard/serving/templates/") for n in names)
    assert not any("tests/" in n or "__pycache__" in n for n in names)


def _resolve(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} against `env`."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""
    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


def test_compose_file_agrees_with_the_cli_the_settings_and_the_dockerfile(monkeypatch):
    services, volumes = COMPOSE["services"], COMPOSE["volumes"]
    gw = services["distillguard"]
    assert gw["build"]["target"] in STAGES and services["litellm"]["build"]["target"] in STAGES
    assert "profiles" not in gw and services["litellm"]["profiles"] == ["litellm"]
    names, envvars = _serve_options()
    cmd = gw["command"]
    assert cmd[0] == "serve" and {c for c in cmd if c.startswith("--")} <= names
    port = _option_value(cmd, "--port")
    assert [p.split(":")[-1] for p in gw["ports"]] == [port]
    health = " ".join(gw["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in health

    # every DISTILLGUARD_ variable is a setting (or the key lists, or the --config option's variable)
    env = gw["environment"]
    unknown = {k for k in env if k.startswith("DISTILLGUARD_")} - _known_env_names()
    assert not unknown, f"compose sets variables no setting reads: {unknown}"
    with pytest.raises(KeyError, match=API_KEYS_ENV):  # the service refuses to start without keys
        _resolve(env[API_KEYS_ENV], {})

    # the mounted settings file and the environment, resolved as compose would, make valid settings
    mounts = {m.split(":")[1]: m.split(":")[0] for m in gw["volumes"]}
    config_var = next(v for v, name in envvars.items() if name == "config")
    config_in_container = env[config_var]
    config_on_host = ROOT / mounts[config_in_container]
    assert config_on_host.is_file()
    for k in list(os.environ):
        if k.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, _resolve(str(v), {API_KEYS_ENV: "k1"}))
    settings = load_settings(config_on_host)
    assert settings.api_keys == ("k1",) and settings.fail_mode == "open" and settings.metrics_access == "key"
    # the folders the settings name are volumes declared at the top level
    for folder in (settings.state_path, settings.mlruns, settings.store):
        assert str(folder) in mounts, f"{folder} is not a volume"
        assert mounts[str(folder)] in volumes
    image_env = " ".join(a for i, a in STAGES["distillguard"] if i == "ENV")
    assert f"DISTILLGUARD_STATE_PATH={settings.state_path}" in image_env

    # the optional LiteLLM proxy: the README's guardrail, pointed at the service by its compose name
    lite = services["litellm"]
    lite_mounts = {m.split(":")[1]: m.split(":")[0] for m in lite["volumes"]}
    config = yaml.safe_load((ROOT / lite_mounts[_option_value(lite["command"], "--config")]).read_text())
    guard = config["guardrails"][0]["litellm_params"]
    assert guard["guardrail"] == "generic_guardrail_api" and guard["mode"] == "pre_call" and guard["default_on"]
    assert guard["api_base"] == f"http://distillguard:{port}"
    assert guard["api_key"].removeprefix("os.environ/") in lite["environment"]
    assert lite["depends_on"]["distillguard"]["condition"] == "service_healthy"
    assert [p.split(":")[-1] for p in lite["ports"]] == [_option_value(lite["command"], "--port")]


def _runtime() -> str | None:
    """The container runtime whose daemon answers, if any."""
    for tool in ("docker", "podman"):
        if shutil.which(tool):
            r = subprocess.run([tool, "info"], check=False, capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                return tool
    return None


def test_compose_file_validates_with_the_runtime(tmp_path):
    tool = _runtime()
    if tool is None:
        pytest.skip("no container runtime answers here (docker/podman info failed): compose.yaml is checked "
                    "without one by test_compose_file_agrees_with_the_cli_the_settings_and_the_dockerfile")
    env = {**os.environ, API_KEYS_ENV: "k1"}
    r = subprocess.run([tool, "compose", "-f", str(ROOT / "compose.yaml"), "--profile", "litellm", "config", "-q"],
                       check=False, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr


def test_the_image_builds_and_answers_its_probes():
    tool = _runtime()
    if tool is None:
        pytest.skip("no container runtime answers here (docker/podman info failed): the image is not built; "
                    "test_the_build_context_builds_the_package builds the package from the same files")
    tag = f"distillguard-test:{uuid.uuid4().hex[:8]}"
    r = subprocess.run([tool, "build", "-t", tag, str(ROOT)], check=False, capture_output=True, text=True,
                       timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    name = f"distillguard-test-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run([tool, "run", "-d", "--name", name, "-e", f"{API_KEYS_ENV}=k1", "-p", "127.0.0.1::8000", tag],
                       check=True, capture_output=True, timeout=120)
        address = subprocess.run([tool, "port", name, "8000"], capture_output=True, text=True,
                                 check=True).stdout.split()[0]
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"http://{address}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        else:
            logs = subprocess.run([tool, "logs", name], check=False, capture_output=True, text=True).stderr
            raise AssertionError(f"the container did not answer /healthz in 180 s: {logs[-3000:]}")
        ready = httpx.get(f"http://{address}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json() == {"ready": False}  # no model in a fresh registry
        user = subprocess.run([tool, "exec", name, "id", "-u"], check=False, capture_output=True,
                              text=True).stdout.strip()
        assert user != "0"
    finally:
        subprocess.run([tool, "rm", "-f", name], check=False, capture_output=True)
        subprocess.run([tool, "rmi", "-f", tag], check=False, capture_output=True)
