"""``python -m distilkit`` = the ``distilkit`` command."""

from distilkit.cli.app import main

main()
