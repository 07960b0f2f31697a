"""Small Hugging Face Hub helpers shared by the model loaders: offline mode and repo-id syntax."""

from __future__ import annotations

import os

from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError, validate_repo_id


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set (only the local cache may be read)."""
    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def is_repo_id(name: str) -> bool:
    """Whether `name` is a hub repo id (owner/name); a bare name is taken for a (missing) local folder."""
    if name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True
