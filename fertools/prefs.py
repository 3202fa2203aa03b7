"""What a user had chosen, kept across sessions: dataset, model, augmentation, run settings.

A refresh or a new tab is a new Streamlit session, which would start from the defaults; the
frame saves these few choices per user after each page and gives them back to a fresh session::

    runs/_prefs/<owner>.json     {"dataset_source": ..., "dataset_label": ..., "model_dir": ...,
                                  "augment_config": {...}, "train_config": {...}}

Only the keys in :data:`KEYS` are kept, only JSON values; what comes back is checked again by
the app (a model folder must still be one this user may use) before it is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fertools.constants import runs_dir
from fertools.runs import write_json
from fertools.users import is_user_id

PREFS = "_prefs"
KEYS = ("dataset_source", "dataset_label", "model_dir", "augment_config", "train_config")
#: A preferences file is a few hundred bytes; anything larger is not one of ours.
MAX_BYTES = 64 * 1024


def _path(owner: str, root: str | os.PathLike | None) -> Path:
    if not is_user_id(owner):
        raise ValueError(f"{owner!r} is not a user id (lower-case letters, digits and hyphens).")
    return Path(root or runs_dir()) / PREFS / f"{owner}.json"


def load(owner: str, root: str | os.PathLike | None = None) -> dict:
    """The saved choices of ``owner`` (only :data:`KEYS`); ``{}`` when none or unreadable."""
    path = _path(owner, root)
    try:
        if path.stat().st_size > MAX_BYTES:
            return {}
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {key: values[key] for key in KEYS if isinstance(values, dict) and key in values}


def save(owner: str, values: dict, root: str | os.PathLike | None = None) -> None:
    """Save ``owner``'s choices (the :data:`KEYS` of ``values``) when they differ from the saved ones."""
    chosen = {key: values[key] for key in KEYS if key in values}
    if chosen == load(owner, root):
        return
    path = _path(owner, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, chosen)
