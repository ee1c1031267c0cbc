"""HTTP serving: wire formats (formats.py); the server itself arrives with `distilkit serve`."""
