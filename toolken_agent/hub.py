"""Where a checkpoint reference points: a directory here, or a Hub repo read through the local cache.

``toolkens=``, ``--toolkens`` and :meth:`Toolkens.from_pretrained` take either. A path
that exists is a directory; otherwise a reference shaped like a repo id (``owner/name``)
is looked up with huggingface_hub's ``snapshot_download``, which reads the local
Hugging Face cache (``HF_HUB_CACHE``) and downloads only what it lacks when the Hub can
be reached. With ``HF_HUB_OFFLINE=1`` a repo in the cache loads and one not in it is a
one-line error. Only the checkpoint's own files are fetched, never code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from .errors import CheckpointError


def looks_like_repo_id(ref: str) -> bool:
    """Whether ``ref`` could name a Hub model repo (``owner/name``), as huggingface_hub checks repo ids."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if ref.count("/") != 1 or ref.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(ref)
    except HFValidationError:
        return False
    return True


def resolve_checkpoint(ref: str | Path, **hub_kwargs: Any) -> Path:
    """The local directory holding the checkpoint ``ref`` names (see the module docstring).

    ``hub_kwargs`` go to ``snapshot_download`` (``revision``, ``cache_dir``,
    ``local_files_only``, ``token``, ``force_download``). What is neither a path here
    nor a repo id is returned as a path, for :func:`~toolken_agent.checkpoint.load_checkpoint`
    to say what is wrong with it.
    """
    path = Path(ref).expanduser()
    if path.exists() or not looks_like_repo_id(str(ref)):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id=str(ref), repo_type="model", allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE],
                                   **{k: v for k, v in hub_kwargs.items() if v is not None})
    except LocalEntryNotFoundError:
        raise CheckpointError(f"no toolken checkpoint at {ref}: no such directory, and the Hub repo {ref} is not "
                              "in the local Hugging Face cache (and the Hub cannot be reached)") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"no toolken checkpoint at {ref}: no such directory, and the Hub says: {first}") from None
    return Path(folder)
