"""Write py3-none-any wheels of installed pure-Python distributions from their files in site-packages.

For a machine without internet: some dependencies (fvcore) publish no wheel, and building one needs the
sdist from the index. The installed files are what the package is; compiled packages are refused.
Usage: python scripts/wheel_from_installed.py OUT_DIR NAME [NAME ...]
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import re
import sys
import zipfile
from pathlib import Path, PurePosixPath

NATIVE = (".so", ".pyd", ".dylib", ".dll")
DROPPED = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "WHEEL")


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_from_installed(name: str, out_dir: Path) -> Path:
    """The wheel of installed distribution `name`, written into `out_dir` (SystemExit if it cannot be)."""
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        raise SystemExit(f"{name} is not installed in this Python ({sys.executable})") from None
    files = [PurePosixPath(str(f)) for f in dist.files or []]
    info = next((f.parts[0] for f in files if f.parts and f.parts[0].endswith(".dist-info")), None)
    if info is None:
        raise SystemExit(f"{name}: no .dist-info among its installed files (installed as an egg?)")
    native = [str(f) for f in files if f.suffix in NATIVE]
    if native:
        raise SystemExit(f"{name} has compiled files ({native[0]}): not pure Python, bundle a wheel for the GPU image")
    keep = [f for f in files if f.parts[0] != ".." and "__pycache__" not in f.parts and f.suffix != ".pyc"
            and not (f.parts[0] == info and f.name in DROPPED)]  # scripts in ../bin come back from entry_points
    stem = re.sub(r"[-_.]+", "_", info[: -len(".dist-info")].rsplit("-", 1)[0])
    path = out_dir / f"{stem}-{dist.version}-py3-none-any.whl"
    wheel_meta = "Wheel-Version: 1.0\nGenerator: dynconv-bench wheel_from_installed\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in keep:
            data = Path(dist.locate_file(rel)).read_bytes()
            zf.writestr(str(rel), data)
            writer.writerow([str(rel), _digest(data), len(data)])
        zf.writestr(f"{info}/WHEEL", wheel_meta)
        writer.writerow([f"{info}/WHEEL", _digest(wheel_meta.encode()), len(wheel_meta)])
        writer.writerow([f"{info}/RECORD", "", ""])
        zf.writestr(f"{info}/RECORD", record.getvalue())
    return path


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: wheel_from_installed.py OUT_DIR NAME [NAME ...]", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in argv[1:]:
        print(wheel_from_installed(name, out).name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
