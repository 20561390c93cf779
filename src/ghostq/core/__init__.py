"""Torch-free contracts at the bottom of ghostq: config sections, run-folder layout, the model spec, numpy box ops.

Everything here imports only the standard library, numpy, pydantic and yaml; `ghostq.deploy` depends on core only.
"""
