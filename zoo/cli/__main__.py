"""`python -m zoo.cli ...` runs the command line (torchrun and the kernel use this form)."""

from zoo.cli import main

main()
