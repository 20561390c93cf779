"""`ghostq data synth`, `ghostq data split` and `ghostq data noise`."""
