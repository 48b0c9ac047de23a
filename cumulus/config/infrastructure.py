"""Sections of the infrastructure every service relies on (Kafka, Triton, ClickHouse) and of the gateway,
the client-facing service in front of it; with the bases every section builds on."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cumulus.engine.cpu import cpu_supports_bf16


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    """Brokers the services connect to (comma separated host:port)."""
    controller_port: int = 9093
    """Local stack only: the KRaft controller listener of the single-node broker."""
    partitions: int = Field(default=3, ge=1)
    """Partitions per cumulus topic; key = workflow keeps one workflow's events ordered."""
    replication_factor: int = Field(default=1, ge=1)
    """1 for the local single broker; 3 in production."""
    heap: str = "512m"
    """Local stack only: JVM heap of the broker (-Xmx)."""
    libs_dir: Path | None = None
    """Local stack only: where the Kafka jars are fetched to; default <state_dir>/kafka/libs."""
    security_protocol: str = Field(default="PLAINTEXT", pattern="^(PLAINTEXT|SASL_SSL)$")
    """SASL_SSL: TLS to the brokers and a SCRAM-SHA-512 login per service (cumulus/kafka/security.py).
    A local stack started with `cumulus up --secure` is SASL_SSL without setting this."""
    sasl_username: str = ""
    """The principal to log in as; default the service's own name (gateway, collector, ..., cli)."""
    sasl_password_file: Path | None = None
    """Its password; default <state_dir>/kafka/credentials/<principal> (made by `cumulus up --secure`)."""
    ssl_cafile: Path | None = None
    """The CA the brokers' certificates chain to; default the local stack's, else the system's."""


class LiveEndpointConfig(Section):
    """The live model as an OpenAI-compatible HTTP endpoint instead of Triton's ``live`` model
    (services/gateway/openai_target.py): a hosted frontier model, or any server speaking
    ``/v1/chat/completions``. Unset ``base_url``: the live model is Triton's."""

    base_url: str = ""
    """e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8085/v1``."""
    model: str = ""
    """The endpoint's model name (``model`` of each request sent there)."""
    api_key_env: str = "CUMULUS_LIVE_API_KEY"
    """The environment variable holding its API key (read at start; never logged nor captured)."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Longest one request may take, from sending it to its last token."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=64, ge=1)

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)


class TritonConfig(Section):
    host: str = "127.0.0.1"
    """Where Triton listens (the local stack binds loopback only)."""
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    live_model: str = "qwen2.5-coder-0.5b-instruct"
    """Offline model id served as Triton model `live` (see cumulus.models.catalog)."""
    small_model: str = "smollm2-135m-instruct"
    """Offline model id served as Triton model `small`, the base of every adapter."""
    max_batch_size: int = Field(default=8, ge=1, le=256)
    """Dynamic batching: most requests one forward pass serves."""
    batch_delay_us: int = Field(default=2000, ge=0)
    """Dynamic batching: how long Triton waits to fill a batch."""
    max_new_tokens_cap: int = Field(default=512, ge=1)
    """Upper bound on `max_tokens` any request may ask for."""
    dtype: str = Field(default="auto", pattern="^(auto|bfloat16|float32)$")
    """Weights dtype on CPU for serving and the offline gate: ``auto`` is bfloat16 where the CPU has
    native bf16 (AVX512-BF16 or AMX) and float32 elsewhere, where bf16 is emulated at half speed."""

    @property
    def serving_dtype(self) -> str:
        """``dtype`` with ``auto`` resolved for this CPU (cumulus/engine/cpu.py)."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if cpu_supports_bf16() else "float32"

    request_timeout_s: float = Field(default=120.0, gt=0)
    lora_cache_size: int = Field(default=32, ge=1)
    """LoRA adapters the `small` model keeps parsed in memory (least recently used evicted), like
    TensorRT-LLM's host LoRA cache; an evicted adapter is reloaded from the registry or resent."""

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"


class ClickHouseConfig(Section):
    dsn: str = ""
    """`chdb:///abs/path` (embedded, default under the state dir) or `http://host:8123`."""
    database: str = "cumulus"


class ServiceConfig(Section):
    host: str = "127.0.0.1"
    health_port: int
    """HTTP port serving /healthz, /readyz and /metrics for this service."""


class GatewayConfig(ServiceConfig):
    health_port: int = 8090
    grpc_port: int = 50051
    """The client-facing gRPC port of cumulus.v1.Gateway (and of the KServe v2 drop-in)."""
    http_port: int = Field(default=8095, ge=0, le=65535)
    """The OpenAI-compatible HTTP port (/v1/chat/completions, services/gateway/openai_http.py); 0 = off."""
    api_keys_file: Path | None = None
    """Hashed API keys -> tenants; default <state_dir>/api-keys.json (written by `cumulus up`)."""
    tls_cert_file: Path | None = None
    """Server certificate (PEM) of the gRPC port; with ``tls_key_file`` the gateway serves TLS only.

    Unset: the local PKI when `cumulus up --tls` chose it (cumulus/tls.py), else plaintext."""
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    """Set: mutual TLS, every client must present a certificate this CA signed."""
    tls_ca_file: Path | None = None
    """For clients of the gateway (CLI, demo, benches): the CA they trust; set = they speak TLS."""
    tls_client_cert_file: Path | None = None
    """For clients of a mutual-TLS gateway: the certificate they present (with ``tls_client_key_file``)."""
    tls_client_key_file: Path | None = None
    triton_streams: int = Field(default=4, ge=0, le=64)
    """Long-lived gRPC streams to Triton that all requests share; 0 = a stream per request, which
    costs more CPU but lets Triton cancel a request whose client went away (services/gateway/multiplex.py)."""
    default_max_tokens: int = Field(default=256, ge=1)
    """max_tokens used when a request leaves it 0 (capped by triton.max_new_tokens_cap)."""
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    """Largest gRPC message a client may send; a larger one is refused (RESOURCE_EXHAUSTED) before
    it is read into memory, let alone authenticated or parsed."""
    max_concurrent_rpcs: int = Field(default=1024, ge=1)
    """Calls served at once across all clients; more are refused at once (RESOURCE_EXHAUSTED)."""
    tenant_requests_per_s: float = Field(default=500.0, ge=0)
    """Requests one tenant may start per second (a token bucket; 0 = no limit)."""
    tenant_request_burst: float = Field(default=1000.0, ge=1)
    """Requests one tenant may start at once after a quiet spell (the bucket's size)."""
    tenant_tokens_per_min: float = Field(default=0.0, ge=0)
    """Model tokens (prompt + completion) one tenant may use per minute; 0 = no limit."""
    tenant_max_in_flight: int = Field(default=256, ge=0)
    """Requests of one tenant in flight at once; 0 = no limit."""
    max_stream_in_flight: int = Field(default=64, ge=1)
    """Requests of one KServe stream served at once; the stream is not read further until one ends."""
    max_messages: int = Field(default=256, ge=1)
    """Most chat messages one request may carry."""
    max_prompt_chars: int = Field(default=200_000, ge=1)
    """Size limit of a request's prompt: all message contents and tool schemas together."""
    max_tools: int = Field(default=64, ge=0)
    """Most tools one request may declare."""
    max_stop_sequences: int = Field(default=8, ge=0)
    """Most stop strings one request may carry (each at most 256 characters)."""
    max_metadata_entries: int = Field(default=32, ge=0)
    """Most metadata entries one request may carry."""
    max_metadata_bytes: int = Field(default=8192, ge=0)
    """Size limit of a request's metadata: UTF-8 bytes of all keys and values together."""
    shadow_concurrency: int = Field(default=4, ge=0)
    """Shadow copies in flight at once; when all slots are busy a shadow copy is skipped, never queued."""
    shadow_timeout_s: float = Field(default=60.0, gt=0)
    """A shadow copy still running after this long is abandoned and graded as a candidate error."""
    route_max_age_s: float = Field(default=120.0, gt=0)
    """A rollout's route table that the router has not re-published (router.heartbeat_s) for this
    long is stale: the gateway keeps serving it, never raises a canary weight from a table
    published longer ago than this (a spool replayed late), and reports it (metric
    cumulus_gateway_stale_routes, GET /api/v1/routes, `cumulus status`)."""
    drain_grace_s: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long in-flight requests may take to finish before they are cancelled."""
    events_linger_ms: int = Field(default=20, ge=0, le=1000)
    """How long the event producer waits to fill a batch: fewer Kafka requests per event under load.

    Delays an event's delivery by at most this much, never a response."""
    publisher_close_timeout_s: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long the event producer may take to flush (the rest stays in the spool)."""
    spool_dir: Path | None = None
    """Events waiting for Kafka while it is unreachable; default <state_dir>/spool/gateway."""
    max_spool_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    """Bound of the on-disk event spool; once full, new events are dropped (and counted)."""
    feedback_memory: int = Field(default=100_000, ge=0)
    """Requests remembered for Feedback (tenant, workflow, answer shape; ~400 bytes each).

    Feedback on a request the gateway no longer remembers is refused (NOT_FOUND); 0 refuses all."""
