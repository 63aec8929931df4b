"""verifier: sound verification of neural networks (ONNX models, VNN-LIB properties)."""
__version__ = "0.1.0"
