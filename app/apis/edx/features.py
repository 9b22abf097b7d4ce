"""The features EDX restricts while a workspace is locked: the table in
``features.yaml``, changed by the file ``LOCKCORE_EDX_FEATURES_OVERRIDE`` names (loaded
once per app, by the unit's setup)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from flask import current_app

from .catalog import Workspace

FEATURES_FILE = Path(__file__).with_name("features.yaml")


@dataclass(frozen=True)
class Feature:
    key: str
    label: str
    restricted: bool
    actions: tuple[str, ...]


def load_features(override: str = "") -> tuple[dict[str, Feature], dict[str, dict[str, bool]]]:
    """The feature table, and per-workspace overrides, from the data files."""
    table = yaml.safe_load(FEATURES_FILE.read_text())["tables"]
    features = {
        row["key"]: Feature(
            row["key"], row["label"], bool(row["restricted"]), tuple(row.get("actions", ()))
        )
        for rows in table.values()
        for row in rows
    }
    per_workspace: dict[str, dict[str, bool]] = {}
    if override:
        data = yaml.safe_load(Path(override).read_text()) or {}
        changes = {"": data.get("default") or {}}
        changes.update({str(k): v for k, v in (data.get("workspaces") or {}).items()})
        for where, values in changes.items():
            for key, restricted in values.items():
                if key not in features or not isinstance(restricted, bool):
                    raise ValueError(
                        f"{override}: {where or 'default'}.{key}: unknown feature or not true/false"
                    )
            if where:
                per_workspace[where] = dict(values)
            else:
                features = {
                    k: Feature(f.key, f.label, values.get(k, f.restricted), f.actions)
                    for k, f in features.items()
                }
    return features, per_workspace


DEFAULT_FEATURES, _ = load_features()
GUARDED_ACTIONS = {a: f.key for f in DEFAULT_FEATURES.values() for a in f.actions}


def features() -> tuple[dict[str, Feature], dict[str, dict[str, bool]]]:
    """The app's table (loaded by create_app, with its override applied)."""
    return current_app.extensions["edx_features"]  # type: ignore[no-any-return]


def is_restricted(feature: Feature, workspace: Workspace) -> bool:
    return features()[1].get(workspace.id, {}).get(feature.key, feature.restricted)
