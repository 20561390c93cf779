"""`python -m ghostq` (also what torchrun runs)."""

from ghostq.cli import main

main()
