"""`python -m stellar_reconciler.simnet`: run the simulated network (see cli.py)."""

from stellar_reconciler.simnet.cli import main

main()
