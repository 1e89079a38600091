"""Files replaced whole: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``target``, renamed onto it when the block succeeds.

    The name is unique (``mkstemp``), so two writers, threads or processes,
    never share one; if the block raises, the temporary file is removed and
    ``target`` is left as it was.

    Parameters
    ----------
    target : Path
        The file to replace; its folder must exist.

    Yields
    ------
    Path
        Where to write the new content.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
