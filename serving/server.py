"""`distillguard serve`: one uvicorn process with the app, its model poller and refresh worker."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from distillguard.serving.config import load_settings
from distillguard.serving.log_privacy import withhold_exception_messages


class ServeConfigError(ValueError):
    """Settings that must not be served (no API keys without an explicit opt-out)."""


def serve(host: str, port: int, state_path: Path | None, mlruns: Path | None, store: Path | None,
          config_path: Path | None, *, log_level: str = "info") -> None:
    """Serve until interrupted. Arguments that are None fall back to the config file, then defaults."""
    import uvicorn

    from distillguard.serving.app import create_app

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    settings = load_settings(config_path, state_path=state_path, mlruns=mlruns, store=store)
    if not settings.api_keys and not settings.allow_unauthenticated:
        raise ServeConfigError("no API keys: set DISTILLGUARD_API_KEYS (comma-separated) or api_keys in the "
                               "config file (or allow_unauthenticated: true for local experiments)")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = uvicorn.Config(create_app(settings, log_level=log_level), host=host, port=port, log_level=log_level,
                            access_log=False, loop="uvloop", http="httptools")  # sets up uvicorn's log handlers
    if settings.logs_redacted:
        withhold_exception_messages()  # on every handler, uvicorn's included: no traceback carries a prompt
    uvicorn.Server(config).run()
