"""`python -m services.gateway`.

Not built yet (see its issue): the process starts, serves /healthz, /readyz (Kafka reachable)
and /metrics on its health port, and stops cleanly on SIGTERM, so the stack can supervise it.
"""

from cumulus.service import run_service, wait_until_stopped

if __name__ == "__main__":
    run_service("gateway", wait_until_stopped)
