"""A benchmark's scratch folder (database and broker data, generated files), removed when the
benchmark's process exits, so runs do not pile gigabytes up under /tmp."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def scratch_folder(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    # At exit rather than in each benchmark's ``finally``: the servers inside must stop first,
    # and a benchmark interrupted by Ctrl-C still cleans up.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root
