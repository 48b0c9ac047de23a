"""What both front doors of the gateway share: its collaborators, bundled so tests can inject fakes."""

from __future__ import annotations

from dataclasses import dataclass

from cumulus.config import CumulusConfig
from cumulus.privacy.policy import TenantPrivacy, load_key
from services.gateway.adapters import AdapterSource
from services.gateway.auth import Authenticator
from services.gateway.capture import EventSink, RedactingSink
from services.gateway.dispatch import Dispatcher
from services.gateway.feedback import RecentRequests
from services.gateway.openai_target import OpenAIEndpoint
from services.gateway.prompt_specs import AdapterPrompts, ArtifactPromptSpecs, PromptSpecSource
from services.gateway.quotas import TenantQuotas
from services.gateway.rendering import PromptRenderer
from services.gateway.routes import RouteBook
from services.gateway.shadow import ShadowRunner
from services.gateway.targets import TargetCaller
from services.gateway.triton import TritonBackend
from services.gateway.validation import Limits


@dataclass
class GatewayCore:
    """The gateway's parts; ``build`` wires them from the config and the injected outside world."""

    config: CumulusConfig
    limits: Limits
    auth: Authenticator
    book: RouteBook
    renderer: PromptRenderer
    prompts: AdapterPrompts
    triton: TritonBackend
    sink: EventSink
    recent: RecentRequests
    shadows: ShadowRunner
    dispatcher: Dispatcher

    @classmethod
    def build(
        cls,
        config: CumulusConfig,
        *,
        triton: TritonBackend,
        renderer: PromptRenderer,
        sink: EventSink,
        adapters: AdapterSource,
        prompt_specs: PromptSpecSource | None = None,
        book: RouteBook | None = None,
        auth: Authenticator | None = None,
    ) -> GatewayCore:
        """Wire the gateway around the given Triton, renderer, event sink and adapter source.

        Adapter prompt specs come from the artifact store unless ``prompt_specs`` says otherwise.
        """
        gateway = config.gateway
        if config.privacy.captures_redacted:
            sink = RedactingSink(sink, TenantPrivacy(config.privacy, load_key(config.redaction_key_file)))
        recent = RecentRequests(gateway.feedback_memory)
        prompts = AdapterPrompts(prompt_specs or ArtifactPromptSpecs(config.artifacts_dir))
        live = OpenAIEndpoint(config.live) if config.live.enabled else None
        caller = TargetCaller(triton, adapters, prompts, live)
        shadows = ShadowRunner(
            caller, sink, concurrency=gateway.shadow_concurrency, timeout_s=gateway.shadow_timeout_s
        )
        return cls(
            config=config,
            limits=Limits.from_config(config),
            auth=auth or Authenticator(config.api_keys_path),
            book=book or RouteBook(max_age_s=gateway.route_max_age_s),
            renderer=renderer,
            prompts=prompts,
            triton=triton,
            sink=sink,
            recent=recent,
            shadows=shadows,
            dispatcher=Dispatcher(caller, sink, shadows, recent, TenantQuotas.from_config(gateway)),
        )

    def timeout_s(self, remaining_s: float | None) -> float:
        """Triton timeout of one request: the configured one, or the client's deadline if sooner."""
        configured = self.config.triton.request_timeout_s
        return configured if remaining_s is None else max(min(configured, remaining_s), 0.001)
