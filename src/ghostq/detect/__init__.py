"""Detection: datasets, the detector, its losses, training and evaluation."""
