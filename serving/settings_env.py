"""Serving settings from `DISTILLGUARD_<FIELD>` environment variables (pydantic-settings reads them).

Every field of a settings model can be set as `DISTILLGUARD_` + its name in capitals: scalars as text
(`DISTILLGUARD_FAIL_MODE=closed`, `DISTILLGUARD_UI_REDACT_PROMPTS=true`), lists and mappings as JSON
(`DISTILLGUARD_LITELLM_IDENTITY_FIELDS='["user_api_key_user_id"]'`). An empty variable counts as unset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel
from pydantic_settings import EnvSettingsSource

ENV_PREFIX = "DISTILLGUARD_"


def env_var(field: str) -> str:
    return ENV_PREFIX + field.upper()


class EnvironmentVariables(EnvSettingsSource):
    """The environment as a settings source, leaving out the fields the caller merges itself."""

    def __init__(self, model: type[BaseModel], skip: Iterable[str] = ()) -> None:
        self.skip = frozenset(skip)
        super().__init__(model, case_sensitive=False, env_prefix=ENV_PREFIX, env_ignore_empty=True)

    def get_field_value(self, field, field_name: str):
        if field_name in self.skip:
            return None, field_name, False
        return super().get_field_value(field, field_name)


def settings_from_env(model: type[BaseModel], skip: Iterable[str] = ()) -> dict:
    """The fields of `model` set in the environment now, as raw values for the model to validate.
    A list or mapping that is not valid JSON raises `ValueError` naming the variable."""
    try:
        return EnvironmentVariables(model, skip)()
    except ValueError as exc:  # pydantic-settings' SettingsError names the field, not the variable
        m = re.search(r'field "(\w+)"', str(exc))
        var = env_var(m.group(1)) if m else "a DISTILLGUARD_ variable"
        raise ValueError(f"{var}: not valid JSON (lists and mappings are given as JSON)") from None
