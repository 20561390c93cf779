"""`ghostq data convert` and `ghostq data check`."""
