"""The judge service (see ARCHITECTURE.md)."""
