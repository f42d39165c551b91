"""Progress bars (tqdm) that start no thread.

tqdm starts a monitor thread in the process with its first bar, even a disabled one. A process
with a second thread is not safe to fork (the child inherits any lock that thread held), and
`qklab.runner` forks its worker processes when it is safe: so qklab's own bars come from here,
with the monitor off (it only adjusts `miniters` of bars that stall).
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=None)
def _quiet(cls: type) -> type:
    return type(cls.__name__, (cls,), {"monitor_interval": 0})


def progress_bar(**kwargs: Any) -> Any:
    """`tqdm.auto.tqdm(**kwargs)` (a notebook bar in Jupyter), without tqdm's monitor thread."""
    from tqdm.auto import tqdm

    return _quiet(tqdm)(**kwargs)
