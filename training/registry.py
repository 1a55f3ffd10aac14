"""MLflow tracking and the model registry: where runs, models and the champion live.

Tracking and registry use `sqlite:///<root>/mlflow.db` with artifacts under `<root>/` (default
`mlruns/`), both created on first use. The registered model `distillguard` carries the aliases
`champion` and `challenger`; each move of the champion is appended to a history kept as a
registered-model tag, which `rollback` walks back.

The folder is portable: MLflow records artifact locations as absolute URIs (it resolves relative
ones when it stores them), so a copied or moved `mlruns/` is re-rooted when it is opened (the
recorded locations under its old place are rewritten to its new one: `re_root`), and models are
loaded from the folder's own files (`model_path`), which also serves a copy that cannot be written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

MODEL_NAME = "distillguard"
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
EXPERIMENT = "distillguard"


class RegistryError(ValueError):
    """A model URI, version or alias that does not resolve."""


#: The columns where MLflow records artifact locations (table, column).
LOCATION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("experiments", "artifact_location"), ("runs", "artifact_uri"), ("model_versions", "storage_location"),
    ("logged_models", "artifact_location"))


def _uri_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def recorded_root(db: Path) -> Path | None:
    """The folder the registry in `db` was written in: the parent of its experiment's `artifacts` location
    (None for a new database or one laid out otherwise)."""
    if not db.exists():
        return None
    try:
        with closing(sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT artifact_location FROM experiments WHERE name = ?", (EXPERIMENT,)).fetchone()
    except sqlite3.Error:
        return None
    if not row or not row[0] or _uri_path(row[0]).name != "artifacts":  # not laid out by `Registry`
        return None
    return _uri_path(row[0]).parent


def re_root(db: Path, old: Path, new: Path) -> bool:
    """Rewrite the artifact locations recorded under `old` to the same places under `new`; False when the
    database cannot be written (a read-only copy: models are then found by `Registry.model_path`)."""
    pairs = [(old.as_uri(), new.as_uri()), (str(old), str(new))]
    try:
        with closing(sqlite3.connect(db)) as conn, conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, column in LOCATION_COLUMNS:
                if table not in tables:
                    continue
                for before, after in pairs:
                    conn.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                 f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                                 (after, len(before) + 1, before, len(before) + 1, before + "/"))
    except sqlite3.Error:
        return False
    return True


def _mlflow():
    # mlflow costs seconds to import: only commands that need it pay for it
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    # a bar per artifact copy is noise in a log (and frames in a file); training prints its own progress
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow


@dataclass
class Registry:
    root: Path = Path("mlruns")

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        db = self.root / "mlflow.db"
        self.written_in = recorded_root(db) or self.root  # where its recorded artifact locations point
        if self.written_in != self.root and re_root(db, self.written_in, self.root):
            self.written_in = self.root
        mlflow = _mlflow()
        self.uri = f"sqlite:///{self.root / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            self.client = MlflowClient(self.uri, self.uri)
            if self.client.get_experiment_by_name(EXPERIMENT) is None:
                self.client.create_experiment(EXPERIMENT, artifact_location=(self.root / "artifacts").as_uri())
            mlflow.set_experiment(EXPERIMENT)
        except MlflowException as exc:  # e.g. a registry written by another MLflow version
            first = str(exc).split(". ")[0]
            raise RegistryError(f"cannot open the registry {self.root / 'mlflow.db'} with MLflow {mlflow.__version__}: "
                                f"{first}. Back it up and run `mlflow db upgrade {self.uri}`, or open it with the "
                                "MLflow version that wrote it") from None

    # -- versions and aliases --------------------------------------------------------------------

    def versions(self) -> list:
        try:
            found = self.client.search_model_versions(f"name='{MODEL_NAME}'")
        except Exception:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def version_ids(self) -> list[str]:
        return [str(v.version) for v in self.versions()]

    def alias_version(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(MODEL_NAME, alias).version)
        except MlflowException:
            return None

    def aliases(self) -> dict[str, str]:
        return {a: v for a in (CHAMPION, CHALLENGER) if (v := self.alias_version(a)) is not None}

    def set_challenger(self, version: str) -> None:
        self.client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)

    def _history(self) -> list[dict]:
        try:
            tags = self.client.get_registered_model(MODEL_NAME).tags
        except Exception:
            return []
        return json.loads(tags.get(HISTORY_TAG, "[]"))

    def set_champion(self, version: str, reason: str) -> None:
        """Point `champion` at `version` and log the move in the history."""
        self._require_version(version)
        previous = self.alias_version(CHAMPION)
        self.client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        history = self._history() + [{"version": version, "previous": previous, "reason": reason,
                                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]
        self.client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, json.dumps(history))

    def rollback(self) -> tuple[str, str]:
        """Move the champion back to the version it replaced; returns (from, to)."""
        current = self.alias_version(CHAMPION)
        if current is None:
            raise RegistryError("there is no champion to roll back")
        previous = next((h["previous"] for h in reversed(self._history()) if h["version"] == current
                         and h["previous"] is not None), None)
        if previous is None:
            raise RegistryError(f"champion v{current} replaced no earlier version; nothing to roll back to")
        self.set_champion(previous, reason=f"rollback from v{current}")
        return current, previous

    def _require_version(self, version: str) -> None:
        if str(version) not in self.version_ids():
            known = ", ".join(self.version_ids()) or "none"
            raise RegistryError(f"model {MODEL_NAME} has no version {version} (versions: {known})")

    # -- models ---------------------------------------------------------------------------------

    def resolve(self, model_uri: str) -> str:
        """The version a `models:/distillguard@alias` or `models:/distillguard/N` URI names."""
        prefix = f"models:/{MODEL_NAME}"
        if model_uri.startswith(prefix + "@"):
            alias = model_uri[len(prefix) + 1:]
            v = self.alias_version(alias)
            if v is None:
                raise RegistryError(f"{model_uri}: no version of {MODEL_NAME} has the alias '{alias}' "
                                    f"(train a model first, or see `distillguard models`)")
            return v
        if model_uri.startswith(prefix + "/"):
            v = model_uri[len(prefix) + 1:]
            self._require_version(v)
            return v
        raise RegistryError(f"{model_uri}: expected models:/{MODEL_NAME}@ALIAS or models:/{MODEL_NAME}/VERSION")

    def model_path(self, version: str) -> Path:
        """The folder of version `version`'s logged model inside this registry's own folder, wherever the
        registry was when the model was logged."""
        location = _uri_path(self.client.get_model_version_download_uri(MODEL_NAME, version))
        try:
            return self.root / location.relative_to(self.written_in)
        except ValueError:  # recorded outside the registry folder: only its recorded place can hold it
            return location

    def version_thresholds(self, version: str) -> dict[str, float] | None:
        """The review and block thresholds version `version` decides at (read from its bundle's
        `bundle.json`, without loading the model); None when its files cannot be read."""
        try:
            meta = json.loads((self.model_path(version) / "artifacts" / "bundle" / "bundle.json").read_text())
            return {k: float(meta["thresholds"][k]) for k in ("review", "block")}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def version_metrics(self, version: str) -> dict[str, float]:
        mv = self.client.get_model_version(MODEL_NAME, version)
        return {k: float(v) for k, v in mv.tags.items() if k.startswith("holdout.")}
