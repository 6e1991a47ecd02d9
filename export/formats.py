"""The format table: one row per format drives export, loading, bench, tests and the README.

Each row names a module with three functions:
    unavailable(device) -> str | None     why this format cannot run here (None: it can)
    export(model, example, path, meta, options) -> dict     writes the artifact, returns facts
    load(path, device) -> Runner          a callable: float32 NCHW numpy -> float32 logits
`torch` is the eager checkpoint itself: the baseline every other format is compared with.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from types import ModuleType

from zoo.errors import ZooError


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    runtime: str  # the package that runs it
    gpu_only: bool
    half: bool  # can hold fp16 weights / build an fp16 engine
    dynamic_batch: bool
    module: str

    def impl(self) -> ModuleType:
        return importlib.import_module(self.module)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("torch", ".pt", "torch", False, True, True, "export.eager"),
        Format("torchscript", ".torchscript", "torch", False, True, True, "export.torchscript"),
        Format("onnx", ".onnx", "onnxruntime", False, False, True, "export.onnx"),
        Format("tensorrt", ".engine", "tensorrt", True, True, True, "export.tensorrt"),
    )
}
EXPORTABLE = tuple(name for name in FORMATS if name != "torch")


def get_format(name: str) -> Format:
    if name in FORMATS:
        return FORMATS[name]
    close = difflib.get_close_matches(name, list(FORMATS), n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ZooError(f"--fmt: unknown format {name!r}{hint} (formats: {', '.join(FORMATS)})")


ALIASES = {"trt": "tensorrt", "engine": "tensorrt", "ts": "torchscript", "eager": "torch"}


def parse_formats(text: str) -> list[Format]:
    """'all' (every exportable format), or one name or a comma list (aliases: trt, ts)."""
    if text == "all":
        return [FORMATS[n] for n in EXPORTABLE]
    names = [n.strip() for n in text.split(",") if n.strip()]
    return [get_format(ALIASES.get(n, n)) for n in names]
