"""`ghostq eval`."""
