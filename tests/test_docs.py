"""The README's feature table is the catalogue the code declares (a column documented but not computed,
or computed but not documented, fails here)."""

from __future__ import annotations

from pathlib import Path

from distillguard.features.catalog import markdown_table


def test_readme_feature_table_is_the_declared_catalogue():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table().strip() in readme
