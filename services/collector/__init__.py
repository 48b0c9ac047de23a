"""The collector service (see ARCHITECTURE.md)."""
