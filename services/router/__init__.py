"""The router service (see ARCHITECTURE.md)."""
