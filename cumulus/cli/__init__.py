"""The `cumulus` command line."""
