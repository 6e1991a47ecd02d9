import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import dicom_factory


@pytest.fixture(scope="session")
def synth12(tmp_path_factory) -> Path:
    """A 12 + 3 study synthetic dataset at 64 px, made once per test session."""
    from zoo.synth import make_synthetic_dataset

    out = tmp_path_factory.mktemp("synth") / "s12"
    make_synthetic_dataset(out, studies=12, test_studies=3, seed=0, size=64, progress=False)
    return out
