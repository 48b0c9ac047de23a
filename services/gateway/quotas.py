"""Per-tenant admission: a request rate, a token budget and a concurrency quota, before any work.

Every front door's calls pass through the one ``Dispatcher``, which takes a ``Lease`` here first.
Three limits per tenant, each 0 = off (``gateway.tenant_*`` in the config):

- **requests per second**, a token bucket holding ``tenant_request_burst`` requests;
- **model tokens per minute** (prompt + completion), charged when a request ends, so a request
  may overdraw the bucket once; the tenant's next requests wait until it has refilled;
- **requests in flight** at once.

A refused request gets RESOURCE_EXHAUSTED saying which limit and when to retry (the message and,
on unary gRPC calls, the ``retry-after-ms`` trailer). Tenants' buckets are created on first use and
forgotten after ``_IDLE_S`` without a request, so made-up tenants cannot grow memory (only
authenticated tenants reach this point anyway).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cumulus.config import GatewayConfig
from cumulus.errors import ResourceExhausted

_IDLE_S = 600.0
_SWEEP_EVERY = 1024
_SOME = 1e-9


@dataclass
class Bucket:
    """``capacity`` units refilled at ``rate`` per second; may run negative after a charge."""

    rate: float
    capacity: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, need: float) -> float:
        """Seconds until ``need`` units are there (0: now)."""
        return 0.0 if self.level >= need else (need - self.level) / self.rate


@dataclass
class _Tenant:
    requests: Bucket | None
    tokens: Bucket | None
    in_flight: int = 0
    seen: float = field(default=0.0)


class Lease:
    """One admitted request's hold on its tenant's quota; ``release`` it when the request ends."""

    def __init__(self, quotas: TenantQuotas, tenant: str) -> None:
        self._quotas, self._tenant, self._open = quotas, tenant, True

    def release(self, tokens: int = 0) -> None:
        if self._open:
            self._open = False
            self._quotas._release(self._tenant, tokens)


class TenantQuotas:
    """The limits of the module docstring for every tenant."""

    def __init__(
        self,
        *,
        requests_per_s: float,
        request_burst: float,
        tokens_per_min: float,
        max_in_flight: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests_per_s = requests_per_s
        self.request_burst = max(request_burst, 1.0)
        self.tokens_per_min = tokens_per_min
        self.max_in_flight = max_in_flight
        self.clock = clock
        self._tenants: dict[str, _Tenant] = {}
        self._admitted = 0

    @classmethod
    def from_config(cls, gateway: GatewayConfig) -> TenantQuotas:
        return cls(
            requests_per_s=gateway.tenant_requests_per_s,
            request_burst=gateway.tenant_request_burst,
            tokens_per_min=gateway.tenant_tokens_per_min,
            max_in_flight=gateway.tenant_max_in_flight,
        )

    def admit(self, tenant: str) -> Lease:
        """A lease for one request of ``tenant``, or ResourceExhausted naming the limit."""
        now = self.clock()
        state = self._state(tenant, now)
        if self.max_in_flight and state.in_flight >= self.max_in_flight:
            raise ResourceExhausted(
                f"tenant {tenant!r} has {state.in_flight} requests in flight, its limit "
                "(gateway.tenant_max_in_flight)",
                retry_after_s=0.1,
            )
        # A request needs one request unit, and a token budget that is not overdrawn.
        for bucket, need, what, setting in (
            (state.requests, 1.0, "request rate", "gateway.tenant_requests_per_s"),
            (state.tokens, _SOME, "token budget", "gateway.tenant_tokens_per_min"),
        ):
            if bucket is None:
                continue
            bucket.refill(now)
            wait = bucket.wait_s(need)
            if wait > 0:
                raise ResourceExhausted(
                    f"tenant {tenant!r} is over its {what} ({setting})", retry_after_s=wait
                )
        if state.requests is not None:
            state.requests.level -= 1.0
        state.in_flight += 1
        return Lease(self, tenant)

    def _release(self, tenant: str, tokens: int) -> None:
        state = self._tenants.get(tenant)
        if state is None:
            return
        state.in_flight -= 1
        if state.tokens is not None and tokens:
            state.tokens.refill(self.clock())
            state.tokens.level -= tokens

    def _state(self, tenant: str, now: float) -> _Tenant:
        self._admitted += 1
        if self._admitted % _SWEEP_EVERY == 0:
            self._tenants = {
                name: t for name, t in self._tenants.items() if t.in_flight or now - t.seen < _IDLE_S
            }
        state = self._tenants.get(tenant)
        if state is None:
            requests = (
                Bucket(self.requests_per_s, self.request_burst, self.request_burst, now)
                if self.requests_per_s
                else None
            )
            tokens = (
                Bucket(self.tokens_per_min / 60.0, self.tokens_per_min, self.tokens_per_min, now)
                if self.tokens_per_min
                else None
            )
            state = self._tenants[tenant] = _Tenant(requests, tokens)
        state.seen = now
        return state
