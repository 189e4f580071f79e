"""``python -m bootstrap`` runs the ``dmboot`` command."""

from bootstrap.cli import main

main()
