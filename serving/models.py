"""The champion model, held for serving: loaded off the request path, swapped only once the new
one is fully loaded (the old one keeps serving until then), by a poll of the alias or on demand."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("distillguard.serving")


@dataclass(frozen=True)
class LoadedModel:
    version: str
    bundle: object  # training.bundle.DetectorBundle
    ctx: object  # features.pipeline.EmbeddingContext
    loaded_at: float


class ModelHolder:
    """`current` is None until a model is loaded; readers take one snapshot per use."""

    def __init__(self, mlruns: Path, store: Path, model_uri: str, *,
                 on_swap: Callable[[LoadedModel | None, LoadedModel], None] | None = None) -> None:
        self.mlruns, self.store, self.model_uri = Path(mlruns), Path(store), model_uri
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._on_swap = on_swap
        self._lock = threading.Lock()
        self._registry = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _resolve(self) -> str:
        if self._registry is None:
            from distillguard.training.registry import Registry

            self._registry = Registry(self.mlruns)
        return self._registry.resolve(self.model_uri)

    def refresh(self) -> str | None:
        """Load the version the model URI names now, if it is not the one held. Returns the held
        version afterwards. Errors leave the held model in place and are kept in `last_error`."""
        with self._lock:
            try:
                version = self._resolve()
                held = self.current
                if held is not None and held.version == version:
                    return version
                from distillguard.training.train_job import load_bundle

                t0 = time.perf_counter()
                bundle = load_bundle(self._registry, f"models:/distillguard/{version}")
                ctx = bundle.open_embeddings(self.store)
                new = LoadedModel(version, bundle, ctx, time.time())
                self.current = new
                self.last_error = None
                log.info("model v%s loaded in %.1f s (was %s)", version, time.perf_counter() - t0,
                         held.version if held else "none")
                if self._on_swap is not None:
                    self._on_swap(held, new)
            except Exception as exc:  # a bad registry state must not take serving down
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model load failed: %s", self.last_error)
            return self.current.version if self.current else None

    def start(self, poll_s: float) -> None:
        """Load now and then poll every `poll_s` seconds (0: load once) in a daemon thread."""

        def run() -> None:
            self.refresh()
            while poll_s > 0 and not self._stop.wait(poll_s):
                self.refresh()

        self._thread = threading.Thread(target=run, name="champion-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
