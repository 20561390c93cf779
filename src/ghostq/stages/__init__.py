"""Stages on top of the libraries: train, compress, export, bench, report and `ghostq run`, under one runner.

The only layer that reads the whole config; `ghostq.detect`, `compress`, `export` and `deploy` below take explicit
arguments. See `runner` for what every stage shares (lock, device, DDP, data prepared once, digest / skip / manifest).
"""
