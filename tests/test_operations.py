"""Operating the service: settings from the environment, probes an orchestrator can call without a key,
Prometheus conventions on /metrics, and the MLflow UI (the `[ui]` extra) on a registry `train` wrote.
Against the real server (`distillguard serve` in a subprocess) and a real trained registry."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from distillguard.serving.config import ServeSettings, load_settings
from distillguard.serving.settings_env import env_var
from prometheus_client.parser import text_string_to_metric_families
from serving_helpers import Server, cli, free_port


def _clear_env(monkeypatch) -> None:
    for k in list(os.environ):
        if k.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(k)


def test_every_setting_can_come_from_the_environment_and_it_wins_over_the_file(tmp_path, monkeypatch):
    _clear_env(monkeypatch)
    cfg = tmp_path / "serve.json"
    cfg.write_text(json.dumps({"fail_mode": "closed", "refresh_batch_accounts": 50, "metrics_access": "off",
                               "litellm_identity_fields": ["user_api_key_hash"]}))
    monkeypatch.setenv("DISTILLGUARD_FAIL_MODE", "open")
    monkeypatch.setenv("DISTILLGUARD_METRICS_ACCESS", "open")
    monkeypatch.setenv("DISTILLGUARD_LITELLM_IDENTITY_FIELDS", '["user_api_key_user_id"]')
    monkeypatch.setenv("DISTILLGUARD_UI_REDACT_PROMPTS", "true")
    monkeypatch.setenv("DISTILLGUARD_RETENTION_DAYS", "")  # empty: unset
    s = load_settings(cfg, state_path=tmp_path / "explicit")
    assert s.fail_mode == "open" and s.metrics_access == "open" and s.ui_redact_prompts is True
    assert s.litellm_identity_fields == ("user_api_key_user_id",)
    assert s.refresh_batch_accounts == 50 and s.retention_days == ServeSettings().retention_days
    monkeypatch.setenv("DISTILLGUARD_STATE_PATH", str(tmp_path / "from-env"))
    assert load_settings(cfg, state_path=tmp_path / "explicit").state_path == tmp_path / "explicit"  # arguments win
    assert load_settings(cfg).state_path == tmp_path / "from-env"

    # every field, as its variable, round-trips (a field added later gets one too)
    _clear_env(monkeypatch)
    sample = ServeSettings(api_keys=("k1", "k2"), workbench_path=tmp_path / "wb", fail_mode="closed",
                           sweep_batch_accounts=7, metrics_access="open")
    for field, value in sample.model_dump(mode="json").items():
        if field in ("api_keys", "analyst_keys"):  # comma-separated lists, added to the file's
            value = ",".join(value if isinstance(value, list) else [f"{n}:{k}" for n, k in value.items()])
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        if value not in (None, ""):
            monkeypatch.setenv(env_var(field), str(value))
    assert load_settings(None) == sample


def test_a_bad_environment_setting_is_a_clear_error_naming_it(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    identity = "DISTILLGUARD_LITELLM_IDENTITY_FIELDS"
    for var, value, named in (("DISTILLGUARD_FAIL_MODE", "sometimes", "fail_mode"),
                              (identity, "user_id", identity)):  # a list is JSON
        r = subprocess.run([sys.executable, "-m", "distillguard.cli", "serve", "--state", str(tmp_path / "s")],
                           env={**base, "DISTILLGUARD_API_KEYS": "k", var: value}, check=False, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 1, r.stderr
        assert named in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_readme_lists_every_metric_by_its_exposed_name():
    from distillguard.serving.metrics import ServingMetrics

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("### Metrics"):].split("\n\n", 2)[2].split("\n\n")[0]
    documented = set(re.findall(r"^\| `(distillguard_\w+)`", table, flags=re.MULTILINE))
    suffix = {"counter": "_total", "info": "_info"}
    exposed = {f.name + suffix.get(f.type, "") for f in ServingMetrics().registry.collect()}
    assert documented == exposed


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _sample(families: dict, family: str, sample: str, **labels) -> float | None:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_probes_without_a_model_and_metrics_switched_off(tmp_path):
    server = Server(tmp_path, metrics_access="off").start(ready="/healthz")  # no registry: never ready
    try:
        bare = httpx.Client(base_url=server.url, timeout=30)
        r = bare.get("/readyz")
        assert r.status_code == 503 and r.json() == {"ready": False}
        detail = server.client.get("/readyz")
        assert detail.status_code == 503 and "refresh" in detail.json() and "pids" in detail.json()
        assert bare.get("/readyz", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert bare.get("/healthz").json() == {"status": "ok"}
        assert server.client.get("/metrics").status_code == 404
        assert bare.get("/metrics").status_code == 404
    finally:
        server.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """A registry `train` wrote (champion v1) on a small simulated world."""
    root = tmp_path_factory.mktemp("operations")
    cli("simulate", "--out", str(root / "sim"), "--accounts", "260", "--seed", "4")
    cli("train", "--events", str(root / "sim" / "events.parquet"), "--labels", str(root / "sim" / "labels.csv"),
        "--mlruns", str(root / "mlruns"), "--store", str(root / "store"), "--no-time-to-detection",
        timeout=1200)  # ~3 min alone on 2 cores; much longer beside other suites
    return root


@pytest.fixture(scope="module")
def server(registry):
    """The real server; its file keeps /metrics behind a key, the environment opens it to a scraper."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISTILLGUARD_METRICS_ACCESS", "open")
        s = Server(registry, "ops", metrics_access="key").start()
    yield s
    s.stop()


def test_readiness_probe_needs_no_key_and_reveals_only_readiness(server):
    bare = httpx.Client(base_url=server.url, timeout=30)
    r = bare.get("/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True}
    full = server.client.get("/readyz").json()
    assert full["ready"] and full["model_version"] == "1" and "storage" in full
    assert bare.get("/readyz", headers={"x-api-key": "wrong"}).status_code == 401
    assert bare.get("/v1/accounts/x").status_code == 401  # the rest still needs a key


def test_metrics_follow_prometheus_conventions(server):
    bare = httpx.Client(base_url=server.url, timeout=30)
    assert server.client.post("/v1/check", json={"account_id": "acct_ops", "prompt": "hello"}).status_code == 200
    assert server.client.post("/v1/check", json={"account_id": "acct_ops"}).status_code == 422
    r = bare.get("/metrics")  # metrics_access "open" from the environment wins over the file's "key"
    assert r.status_code == 200, r.text
    fam = _families(r.text)
    assert _sample(fam, "distillguard_request_seconds", "distillguard_request_seconds_count",
                   endpoint="check", code="200") >= 1
    assert _sample(fam, "distillguard_request_seconds", "distillguard_request_seconds_count",
                   endpoint="check", code="422") >= 1
    # the model version as a label of an info metric (the text format types it gauge)
    assert _sample(fam, "distillguard_model_info", "distillguard_model_info", version="1") == 1.0
    for counter in ("distillguard_refresh_errors", "distillguard_worker_restarts",
                    "distillguard_refreshed_accounts", "distillguard_decisions"):
        assert fam[counter].type == "counter", counter
        assert any(s.name == f"{counter}_total" for s in fam[counter].samples), counter
    assert _sample(fam, "distillguard_worker_restarts", "distillguard_worker_restarts_total") == 0


def test_a_killed_worker_counts_as_a_restart(server):
    worker = server.client.get("/readyz").json()["pids"]["worker"]
    os.kill(worker, signal.SIGKILL)
    deadline = time.time() + 120
    while time.time() < deadline:
        fam = _families(server.client.get("/metrics").text)
        restarts = _sample(fam, "distillguard_worker_restarts", "distillguard_worker_restarts_total")
        if restarts == 1:
            break
        time.sleep(0.3)
    assert restarts == 1, restarts


def _full_mlflow() -> str | None:
    try:
        return importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return None


def test_the_mlflow_ui_opens_the_registry(registry):
    version = _full_mlflow()
    if version is None:
        pytest.skip("full mlflow is not installed (mlflow-skinny has no UI): pip install -e '.[ui]'")
    assert version == importlib.metadata.version("mlflow-skinny")
    port = free_port()
    log = (registry / "mlflow-ui.log").open("wb")
    # LiteLLM (imported by MLflow's gateway) would fetch a price list at import
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "127.0.0.1"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
                             f"sqlite:///{registry / 'mlruns' / 'mlflow.db'}", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            cwd=registry, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as ui:
            deadline = time.time() + 300  # MLflow's server imports for a minute or more on 2 busy cores
            while time.time() < deadline:
                assert proc.poll() is None, (registry / "mlflow-ui.log").read_text()[-3000:]
                try:
                    if ui.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            found = ui.get("/api/2.0/mlflow/registered-models/search").json()["registered_models"]
            model = next(m for m in found if m["name"] == "distillguard")
            assert {"alias": "champion", "version": "1"} in model["aliases"]
            mv = ui.get("/api/2.0/mlflow/model-versions/get", params={"name": "distillguard", "version": "1"})
            assert mv.status_code == 200 and mv.json()["model_version"]["status"] == "READY"
            page = ui.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()  # the UI itself, not only the API
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

