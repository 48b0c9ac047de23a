"""The trainer service (see ARCHITECTURE.md)."""
