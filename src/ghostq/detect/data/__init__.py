"""Datasets: real formats, the synthetic aerial set, tiling, label noise."""

from ghostq.detect.data.records import Dataset, ImageRecord

__all__ = ["Dataset", "ImageRecord"]
