"""One memo for values derived from a long-lived object (a model, a tokenizer).

Values are stored on the object itself: they go when it goes, and a new object can
never be handed an old one's value (a global cache keyed by ``id()`` can, once the old
object is freed and its id reused).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_ATTRIBUTE = "_toolken_memo"
_LOCK = threading.RLock()


def memo(owner: Any, key: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per ``owner`` and ``key``; later calls return the stored value."""
    with _LOCK:
        values = owner.__dict__.get(_ATTRIBUTE)
        if values is None:
            values = {}
            object.__setattr__(owner, _ATTRIBUTE, values)
        if key not in values:
            values[key] = compute()
        return values[key]
