"""The wheel that ``pip install`` puts in place: only ``quantrac`` on the import path (no
generic top-level names to clash with a user's other packages), its default configuration and
the board inside it, and the one console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_only_the_quantrac_package(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*build, "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("quantrac-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"quantrac", wheel.name.split("-py3")[0] + ".dist-info"}
    # Every file of config/ ships as the package's default configuration.
    shipped = {n.removeprefix("quantrac/default_config/") for n in names}
    for path in (ROOT / "config").rglob("*"):
        if path.is_file():
            assert path.relative_to(ROOT / "config").as_posix() in shipped, path
    for page in ("index.html", "board.js", "board.css"):
        assert f"quantrac/board/{page}" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert scripts.split() == ["[console_scripts]", "quantrac", "=", "quantrac.cli.main:main"]
