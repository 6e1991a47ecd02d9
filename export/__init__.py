"""Export per-series models to TorchScript, ONNX and TensorRT. Uses `zoo`, never the reverse."""
