"""zoo: a model zoo and export toolkit for RSNA 2024 Lumbar Spine Degenerative Classification."""

import os

# Nothing in this package may reach for the network: timm/huggingface_hub would try to download
# weights, albumentations would check for updates. Set before either is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
