"""Parts of benchmarks/incremental.py: the feature bank and heads (bank), the ONNX check (export), the report."""
