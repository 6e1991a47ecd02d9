"""The Kaggle submission kernel (internet off). `zoo package` copies this file into
DIR/kernel/ and fills in DATASET_SLUG; `kaggle kernels push -p DIR/kernel` uploads it.

It finds the package wherever Kaggle mounted it (the manifest beside a wheels folder, one or
two folders deep, or sub-folders uploaded as NAME.zip with `--dir-mode zip`, extracted here
into the working folder), installs zoo and the extra wheels without touching the network,
says what it found and what is missing, then runs `zoo predict`, the code path tested locally.
Standard library only: nothing else is importable before the install.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

DATASET_SLUG = "zoo-models"  # replaced by `zoo package`
INPUT = Path("/kaggle/input")
WORKING = Path("/kaggle/working")
COMPETITION = INPUT / "rsna-2024-lumbar-spine-degenerative-classification"
OUT = WORKING / "submission.csv"
WANTED = ("torch", "numpy", "pydicom", "cv2", "onnxruntime", "tensorrt", "timm", "pylibjpeg")


def find_package(root: Path = INPUT, slug: str = DATASET_SLUG) -> Path:
    """The folder holding manifest.json (one run) or ensemble.json (several) and the wheels
    (as a folder or wheels.zip), preferring one under the dataset's own slug; at most three
    levels below `root`."""
    found = []
    for depth in ("", "*/", "*/*/", "*/*/*/"):
        for marker in ("manifest.json", "ensemble.json"):
            for folder in sorted(m.parent for m in root.glob(f"{depth}{marker}")):
                if (folder / "wheels").is_dir() or (folder / "wheels.zip").is_file():
                    found.append(folder)
    if not found:
        sys.exit(
            f"no zoo package (manifest.json or ensemble.json beside wheels/) under {root}: "
            f"attach the dataset made by `zoo package` ({slug})"
        )
    mine = [f for f in found if slug in f.parts]
    return (mine or found)[0]


def materialise(package: Path, work: Path = WORKING / "zoo_package") -> Path:
    """The package with every NAME.zip (what `--dir-mode zip` uploads for NAME/) extracted; the
    package itself when nothing needs extracting."""
    zips = [z for z in package.glob("*.zip") if not (package / z.stem).is_dir()]
    if not zips:
        return package
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(package, work, ignore=shutil.ignore_patterns("*.zip"))
    for archive in zips:
        with zipfile.ZipFile(archive) as z:
            z.extractall(work / archive.stem)
    print(f"zoo kernel: extracted {', '.join(z.name for z in zips)} into {work}")
    return work


def install_offline(package: Path) -> None:
    wheels = sorted((package / "wheels").glob("*.whl"))
    if not any(w.name.startswith("zoo-") for w in wheels):
        sys.exit(f"no zoo wheel in {package / 'wheels'}: make the dataset with `zoo package`")
    # --no-deps: torch, pydicom, OpenCV come from the Kaggle image; extra wheels shipped with
    # `zoo package --wheelhouse` (onnxruntime-gpu, tensorrt, pylibjpeg) are installed too.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--quiet",
            "--find-links",
            str(package / "wheels"),
            *map(str, wheels),
        ],
        check=True,
    )


def report_environment() -> None:
    found = {name: importlib.util.find_spec(name) is not None for name in WANTED}
    have = ", ".join(n for n, ok in found.items() if ok)
    missing = ", ".join(n for n, ok in found.items() if not ok) or "nothing"
    print(
        f"zoo kernel: found {have}; missing {missing} "
        "(ship wheels with `zoo package --wheelhouse DIR` to add them)"
    )


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    package = materialise(find_package())
    print(f"zoo kernel: package {package}")
    install_offline(package)
    report_environment()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo.cli",
            "predict",
            "--model",
            str(package),
            "--data",
            str(COMPETITION),
            "--out",
            str(OUT),
            "--work",
            str(WORKING / "zoo_engines"),
        ],
        check=True,
    )


if __name__ == "__main__":
    main()
