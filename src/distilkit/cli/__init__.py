"""The ``distilkit`` command line (typer); one thin module per command."""
