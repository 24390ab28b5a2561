"""``python -m bulkmail`` runs the CLI."""

from bulkmail.cli.main import main

main()
