"""The gateway service (see ARCHITECTURE.md)."""
