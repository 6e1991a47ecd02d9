"""The Kaggle submission kernel (internet off). `zoo package` copies this file into
DIR/kernel/ and fills in DATASET; `kaggle kernels push -p DIR/kernel` uploads it.

It installs zoo from the wheels in the attached dataset without touching the network, then
runs `zoo predict`, the same code path that was tested locally.
"""

import glob
import os
import subprocess
import sys

DATASET = "/kaggle/input/zoo-models"  # replaced by `zoo package`
COMPETITION = "/kaggle/input/rsna-2024-lumbar-spine-degenerative-classification"
OUT = "/kaggle/working/submission.csv"


def install_offline() -> None:
    wheels = sorted(glob.glob(os.path.join(DATASET, "wheels", "*.whl")))
    if not wheels:
        sys.exit(f"no wheels in {DATASET}/wheels: attach the dataset made by `zoo package`")
    # --no-deps: torch, timm, pydicom and friends come from the Kaggle image; extra wheels
    # (onnxruntime-gpu, tensorrt) are installed too when the dataset carries them.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", *wheels],
        check=True,
    )


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    install_offline()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo.cli",
            "predict",
            "--model",
            DATASET,
            "--data",
            COMPETITION,
            "--out",
            OUT,
            "--work",
            "/kaggle/working/zoo_engines",
        ],
        check=True,
    )


if __name__ == "__main__":
    main()
