"""The format table: one row per format drives export, loading, bench, the kernel's runtime
chain, tests and the README. No caller names a format; each is reached through its row.

Every row names a module that implements the protocol:

    unavailable(device) -> str | None       why this format cannot run here (None: it can)
    export(model, example, path, meta, options) -> dict
                                            writes the artifact, returns facts for the manifest
                                            (only rows with a suffix: the others are built from
                                            their `source` row's artifact at load time)
    load(path, device, spec, entry) -> Runner
                                            a callable: float32 NCHW numpy -> float32 logits
    load_shipped(base, fold_entries, spec, device, work) -> (Runner, note)   optional
                                            for a format that may rebuild what was shipped
                                            (TensorRT: an engine for this GPU from the ONNX)

`torch` is the eager checkpoint itself: the baseline every other format is compared with.
`CHAIN` is the fallback order of the kernel, defined here and nowhere else.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from export.manifest import verified_path
from export.runner import Runner
from zoo.errors import ZooError


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # its own artifact's suffix; "" for a runtime built from `source`
    runtime: str  # the package that runs it
    gpu_only: bool
    half: bool  # runs in fp16 (or can build an fp16 artifact)
    dynamic_batch: bool
    module: str
    source: str | None = None  # the row whose artifact it is built from, when it has none
    builds_from: str | None = None  # the row its own artifact is built from at export
    portable: bool = True  # its artifact runs on other machines (a TensorRT engine does not)

    def impl(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def artifact(self) -> str:
        """The row whose file this format loads (itself, or its source)."""
        return self.source or self.name

    def load_shipped(
        self, base: Path, fold_entries: dict, spec, device: str, work: Path
    ) -> tuple[Runner, str]:
        """A runner for one fold from a package or export folder, sha256 checked first (with
        the weights file beside it, OpenVINO's model.bin, where the entry has one)."""
        impl = self.impl()
        if hasattr(impl, "load_shipped"):
            return impl.load_shipped(base, fold_entries, spec, device, work)
        entry = fold_entries.get(self.artifact)
        if entry is None or entry.get("status") != "ok":
            raise RuntimeError(f"no {self.artifact} artifact with status ok for this fold")
        if isinstance(entry.get("weights"), dict):
            verified_path(base, entry["weights"])
        path = verified_path(base, entry)
        note = f"shipped artifact, sha256 verified, {precision_of(self, entry)}"
        return impl.load(path, device, spec, entry), note


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("torch", ".pt", "torch", False, False, True, "export.eager"),
        Format("torch_fp16", "", "torch", True, True, True, "export.eager_fp16", "torch"),
        Format("compile", "", "torch", True, True, False, "export.compiled", "torch"),
        Format("torchscript", ".torchscript", "torch", False, True, True, "export.torchscript"),
        Format("onnx", ".onnx", "onnxruntime", False, True, True, "export.onnx"),
        Format(
            "openvino",
            ".xml",
            "openvino",
            False,
            True,
            True,
            "export.openvino",
            builds_from="onnx",
        ),
        Format(
            "tensorrt",
            ".engine",
            "tensorrt",
            True,
            True,
            True,
            "export.tensorrt",
            builds_from="onnx",
            portable=False,
        ),
    )
}
EXPORTABLE = tuple(name for name, f in FORMATS.items() if f.suffix and name != "torch")
# The kernel's fallback order: fastest GPU runtimes first, the eager checkpoint last.
CHAIN = ("tensorrt", "compile", "torch_fp16", "openvino", "onnx", "torchscript", "torch")
# What a package must carry so that every format of the chain can be built in the kernel: a
# format whose artifact is tied to one machine (a TensorRT engine: one GPU and TensorRT
# version) ships the source it is rebuilt from instead.
SHIPPED = tuple(
    dict.fromkeys(
        FORMATS[n].artifact if FORMATS[n].portable else FORMATS[n].builds_from for n in CHAIN
    )
)


def precision_of(fmt: Format, entry: dict | None) -> str:
    """fp16 for runtimes built in fp16 (their module says so), the machine's for a runtime
    that picks its precision where it runs (OpenVINO: bf16 on CPUs with native bf16), else
    the artifact's own."""
    impl = fmt.impl()
    if hasattr(impl, "runtime_precision"):
        return impl.runtime_precision()
    return getattr(impl, "PRECISION", None) or (entry or {}).get("precision", "fp32")


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
    formats = [get_format(ALIASES.get(n, n)) for n in names]
    built = [f.name for f in formats if not f.suffix]
    if built:
        raise ZooError(
            f"--fmt: {', '.join(built)} is built from the checkpoint where it runs; "
            f"export one of {', '.join(EXPORTABLE)}"
        )
    return formats


def chain_for(first: str | None) -> list[Format]:
    """The chain with `first` (a selected or requested format) moved to the front."""
    names = dict.fromkeys([first, *CHAIN] if first in FORMATS else CHAIN)
    return [FORMATS[n] for n in names]
