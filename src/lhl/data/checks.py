"""What lies near a missing path: shared by the data sources' error messages."""
from __future__ import annotations

import heapq
import os
from pathlib import Path


def found_near(path, limit: int = 6) -> str:
    """What exists at or above `path`: the nearest existing folder and a few of its entries.

    For error messages: a wrong root or a half-unpacked download shows at a glance.
    """
    path = Path(path).absolute()
    if path.is_file():
        return f"{path} is a file, not a folder"
    folder = path
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    where = str(folder) if folder == path else f"the nearest existing folder, {folder},"
    try:
        with os.scandir(folder) as it:
            entries = [(e.name, e.is_dir()) for e in it]
    except OSError as err:
        return f"{where} cannot be listed ({err.strerror or err})"
    if not entries:
        return f"{where} is empty"
    shown = [n + ("/" if d else "") for n, d in heapq.nsmallest(limit, entries)]
    more = f", ... ({len(entries)} entries)" if len(entries) > limit else ""
    return f"{where} holds {', '.join(shown)}{more}"

