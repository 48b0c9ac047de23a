"""The local stack: Kafka, Triton and the services as processes on loopback (no Docker)."""
