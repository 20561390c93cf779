"""Datasets: real formats, the synthetic aerial set, tiling, label noise."""

from ghostq.core.records import Dataset, ImageRecord

__all__ = ["Dataset", "ImageRecord"]
