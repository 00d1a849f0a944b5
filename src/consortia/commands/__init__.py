"""Command-line sub-apps (``consortia init|serve|db|user|token``), registered by cli.py."""
