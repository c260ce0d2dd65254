"""SiamMask PyTorch checkpoint -> contract ONNX model exporter (`siamedge export`, extra: export).

Importing this package loads neither torch nor onnx; its modules do, on first use.
"""
