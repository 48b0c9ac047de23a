"""The one typed configuration of every service and of the CLI.

Sources, later ones winning: the defaults declared with each field (a working local stack with
nothing to configure), a YAML file (``--config``, ``$CUMULUS_CONFIG`` or ``./cumulus.yaml``), then
environment variables ``CUMULUS_<SECTION>__<FIELD>`` (e.g. ``CUMULUS_KAFKA__BOOTSTRAP_SERVERS``;
lists and mappings as JSON: ``CUMULUS_ROUTER__CANARY_STEPS="[0.1, 0.5]"``).
Unknown keys are refused, so a typo never silently falls back to a default.

The sections live in :mod:`cumulus.config.infrastructure` (Kafka, Triton, ClickHouse, gateway) and
:mod:`cumulus.config.pipeline` (collector, trainer, judge, router), privacy in
:mod:`cumulus.config.privacy`; the whole config and its loading in :mod:`cumulus.config.loading`.
Import them from here.
"""

from cumulus.config.drift import DriftConfig, DriftResponse, Thresholds
from cumulus.config.infrastructure import (
    ClickHouseConfig,
    GatewayConfig,
    KafkaConfig,
    LiveEndpointConfig,
    Section,
    ServiceConfig,
    TritonConfig,
)
from cumulus.config.loading import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    CumulusConfig,
    load_config,
)
from cumulus.config.pipeline import (
    CaptureConfig,
    CollectorConfig,
    DetectionConfig,
    ExportConfig,
    GraderName,
    JudgeConfig,
    LlmJudgeConfig,
    ModelPrice,
    RouterConfig,
    StudentConfig,
    TrainerConfig,
)
from cumulus.config.privacy import PrivacyConfig, RedactionPolicy, RedactMode

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "CaptureConfig",
    "ClickHouseConfig",
    "CollectorConfig",
    "CumulusConfig",
    "DetectionConfig",
    "DriftConfig",
    "DriftResponse",
    "ExportConfig",
    "GatewayConfig",
    "GraderName",
    "JudgeConfig",
    "KafkaConfig",
    "LiveEndpointConfig",
    "LlmJudgeConfig",
    "ModelPrice",
    "PrivacyConfig",
    "RedactMode",
    "RedactionPolicy",
    "RouterConfig",
    "Section",
    "ServiceConfig",
    "StudentConfig",
    "Thresholds",
    "TrainerConfig",
    "TritonConfig",
    "load_config",
]
