import datetime

from cumulus.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdapterStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADAPTER_STATUS_UNSPECIFIED: _ClassVar[AdapterStatus]
    ADAPTER_STATUS_TRAINING: _ClassVar[AdapterStatus]
    ADAPTER_STATUS_READY: _ClassVar[AdapterStatus]
    ADAPTER_STATUS_REJECTED: _ClassVar[AdapterStatus]
    ADAPTER_STATUS_FAILED: _ClassVar[AdapterStatus]

class RolloutAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_ACTION_UNSPECIFIED: _ClassVar[RolloutAction]
    ROLLOUT_ACTION_PAUSE: _ClassVar[RolloutAction]
    ROLLOUT_ACTION_RESUME: _ClassVar[RolloutAction]
    ROLLOUT_ACTION_PROMOTE: _ClassVar[RolloutAction]
    ROLLOUT_ACTION_ROLLBACK: _ClassVar[RolloutAction]

class DriftSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIFT_SEVERITY_UNSPECIFIED: _ClassVar[DriftSeverity]
    DRIFT_SEVERITY_NOTICE: _ClassVar[DriftSeverity]
    DRIFT_SEVERITY_WARNING: _ClassVar[DriftSeverity]
    DRIFT_SEVERITY_CRITICAL: _ClassVar[DriftSeverity]
ADAPTER_STATUS_UNSPECIFIED: AdapterStatus
ADAPTER_STATUS_TRAINING: AdapterStatus
ADAPTER_STATUS_READY: AdapterStatus
ADAPTER_STATUS_REJECTED: AdapterStatus
ADAPTER_STATUS_FAILED: AdapterStatus
ROLLOUT_ACTION_UNSPECIFIED: RolloutAction
ROLLOUT_ACTION_PAUSE: RolloutAction
ROLLOUT_ACTION_RESUME: RolloutAction
ROLLOUT_ACTION_PROMOTE: RolloutAction
ROLLOUT_ACTION_ROLLBACK: RolloutAction
DRIFT_SEVERITY_UNSPECIFIED: DriftSeverity
DRIFT_SEVERITY_NOTICE: DriftSeverity
DRIFT_SEVERITY_WARNING: DriftSeverity
DRIFT_SEVERITY_CRITICAL: DriftSeverity

class InferenceEvent(_message.Message):
    __slots__ = ("meta", "request_id", "messages", "tools", "params", "metadata", "session_key", "prompt_text", "response_text", "route", "usage", "latency_ms", "ttft_ms", "status", "error_code", "error_message", "template_fingerprint", "workflow_derived", "candidate_error", "redacted")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class RedactedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TEXT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_DERIVED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ERROR_FIELD_NUMBER: _ClassVar[int]
    REDACTED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    request_id: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    params: _common_pb2.GenerationParams
    metadata: _containers.ScalarMap[str, str]
    session_key: str
    prompt_text: str
    response_text: str
    route: _common_pb2.Route
    usage: _common_pb2.Usage
    latency_ms: float
    ttft_ms: float
    status: _common_pb2.Status
    error_code: str
    error_message: str
    template_fingerprint: str
    workflow_derived: bool
    candidate_error: str
    redacted: _containers.ScalarMap[str, int]
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., request_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., params: _Optional[_Union[_common_pb2.GenerationParams, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., session_key: _Optional[str] = ..., prompt_text: _Optional[str] = ..., response_text: _Optional[str] = ..., route: _Optional[_Union[_common_pb2.Route, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., latency_ms: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., status: _Optional[_Union[_common_pb2.Status, str]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., template_fingerprint: _Optional[str] = ..., workflow_derived: _Optional[bool] = ..., candidate_error: _Optional[str] = ..., redacted: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ShadowOutput(_message.Message):
    __slots__ = ("route", "text", "usage", "latency_ms", "status", "error_message")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    route: _common_pb2.Route
    text: str
    usage: _common_pb2.Usage
    latency_ms: float
    status: _common_pb2.Status
    error_message: str
    def __init__(self, route: _Optional[_Union[_common_pb2.Route, _Mapping]] = ..., text: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., latency_ms: _Optional[float] = ..., status: _Optional[_Union[_common_pb2.Status, str]] = ..., error_message: _Optional[str] = ...) -> None: ...

class ShadowPair(_message.Message):
    __slots__ = ("meta", "pair_id", "request_id", "adapter_id", "messages", "tools", "live", "candidate", "redacted")
    class RedactedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    PAIR_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    REDACTED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    pair_id: str
    request_id: str
    adapter_id: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    live: ShadowOutput
    candidate: ShadowOutput
    redacted: _containers.ScalarMap[str, int]
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., pair_id: _Optional[str] = ..., request_id: _Optional[str] = ..., adapter_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., live: _Optional[_Union[ShadowOutput, _Mapping]] = ..., candidate: _Optional[_Union[ShadowOutput, _Mapping]] = ..., redacted: _Optional[_Mapping[str, int]] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("meta", "request_id", "score", "label", "correction", "comment", "redacted")
    class RedactedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CORRECTION_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    REDACTED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    request_id: str
    score: float
    label: str
    correction: str
    comment: str
    redacted: _containers.ScalarMap[str, int]
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., request_id: _Optional[str] = ..., score: _Optional[float] = ..., label: _Optional[str] = ..., correction: _Optional[str] = ..., comment: _Optional[str] = ..., redacted: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CandidateEvent(_message.Message):
    __slots__ = ("meta", "candidate_id", "nominated_by", "reason", "evidence", "dataset_id", "dataset_uri", "train_examples", "holdout_examples", "base_model", "parent_adapter_id")
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    NOMINATED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_URI_FIELD_NUMBER: _ClassVar[int]
    TRAIN_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    PARENT_ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    candidate_id: str
    nominated_by: str
    reason: str
    evidence: _containers.ScalarMap[str, float]
    dataset_id: str
    dataset_uri: str
    train_examples: int
    holdout_examples: int
    base_model: str
    parent_adapter_id: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., candidate_id: _Optional[str] = ..., nominated_by: _Optional[str] = ..., reason: _Optional[str] = ..., evidence: _Optional[_Mapping[str, float]] = ..., dataset_id: _Optional[str] = ..., dataset_uri: _Optional[str] = ..., train_examples: _Optional[int] = ..., holdout_examples: _Optional[int] = ..., base_model: _Optional[str] = ..., parent_adapter_id: _Optional[str] = ...) -> None: ...

class AdapterEvent(_message.Message):
    __slots__ = ("meta", "adapter_id", "candidate_id", "dataset_id", "base_model", "status", "progress", "artifact_uri", "lora_task_id", "version", "offline_score", "gate_passed", "metrics", "error", "manifest_sha256")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    LORA_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_SCORE_FIELD_NUMBER: _ClassVar[int]
    GATE_PASSED_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    adapter_id: str
    candidate_id: str
    dataset_id: str
    base_model: str
    status: AdapterStatus
    progress: float
    artifact_uri: str
    lora_task_id: int
    version: str
    offline_score: float
    gate_passed: bool
    metrics: _containers.ScalarMap[str, float]
    error: str
    manifest_sha256: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., adapter_id: _Optional[str] = ..., candidate_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., base_model: _Optional[str] = ..., status: _Optional[_Union[AdapterStatus, str]] = ..., progress: _Optional[float] = ..., artifact_uri: _Optional[str] = ..., lora_task_id: _Optional[int] = ..., version: _Optional[str] = ..., offline_score: _Optional[float] = ..., gate_passed: _Optional[bool] = ..., metrics: _Optional[_Mapping[str, float]] = ..., error: _Optional[str] = ..., manifest_sha256: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("meta", "verdict_id", "pair_id", "adapter_id", "grader", "score", "passed", "details_json", "live_latency_ms", "candidate_latency_ms", "candidate_error", "reference", "live_score", "live_passed", "request_id", "reference_adapter_id")
    META_FIELD_NUMBER: _ClassVar[int]
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    PAIR_ID_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    GRADER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    LIVE_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ERROR_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    LIVE_SCORE_FIELD_NUMBER: _ClassVar[int]
    LIVE_PASSED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    verdict_id: str
    pair_id: str
    adapter_id: str
    grader: str
    score: float
    passed: bool
    details_json: str
    live_latency_ms: float
    candidate_latency_ms: float
    candidate_error: bool
    reference: str
    live_score: float
    live_passed: bool
    request_id: str
    reference_adapter_id: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., verdict_id: _Optional[str] = ..., pair_id: _Optional[str] = ..., adapter_id: _Optional[str] = ..., grader: _Optional[str] = ..., score: _Optional[float] = ..., passed: _Optional[bool] = ..., details_json: _Optional[str] = ..., live_latency_ms: _Optional[float] = ..., candidate_latency_ms: _Optional[float] = ..., candidate_error: _Optional[bool] = ..., reference: _Optional[str] = ..., live_score: _Optional[float] = ..., live_passed: _Optional[bool] = ..., request_id: _Optional[str] = ..., reference_adapter_id: _Optional[str] = ...) -> None: ...

class WeightedTarget(_message.Message):
    __slots__ = ("target", "weight")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    target: _common_pb2.RouteTarget
    weight: float
    def __init__(self, target: _Optional[_Union[_common_pb2.RouteTarget, _Mapping]] = ..., weight: _Optional[float] = ...) -> None: ...

class RouteTable(_message.Message):
    __slots__ = ("meta", "version", "live", "canary", "shadow", "shadow_rate", "rollout_state", "anchor", "anchor_rate", "audit_min_per_hour")
    META_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    SHADOW_RATE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_STATE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_RATE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_MIN_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    version: int
    live: _common_pb2.RouteTarget
    canary: _containers.RepeatedCompositeFieldContainer[WeightedTarget]
    shadow: _common_pb2.RouteTarget
    shadow_rate: float
    rollout_state: str
    anchor: _common_pb2.RouteTarget
    anchor_rate: float
    audit_min_per_hour: int
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., version: _Optional[int] = ..., live: _Optional[_Union[_common_pb2.RouteTarget, _Mapping]] = ..., canary: _Optional[_Iterable[_Union[WeightedTarget, _Mapping]]] = ..., shadow: _Optional[_Union[_common_pb2.RouteTarget, _Mapping]] = ..., shadow_rate: _Optional[float] = ..., rollout_state: _Optional[str] = ..., anchor: _Optional[_Union[_common_pb2.RouteTarget, _Mapping]] = ..., anchor_rate: _Optional[float] = ..., audit_min_per_hour: _Optional[int] = ...) -> None: ...

class RolloutCommand(_message.Message):
    __slots__ = ("meta", "action", "adapter_id", "operator", "reason", "operator_token_id", "to_adapter_id")
    META_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    action: RolloutAction
    adapter_id: str
    operator: str
    reason: str
    operator_token_id: str
    to_adapter_id: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., action: _Optional[_Union[RolloutAction, str]] = ..., adapter_id: _Optional[str] = ..., operator: _Optional[str] = ..., reason: _Optional[str] = ..., operator_token_id: _Optional[str] = ..., to_adapter_id: _Optional[str] = ...) -> None: ...

class RolloutEvent(_message.Message):
    __slots__ = ("meta", "rollout_id", "adapter_id", "from_state", "to_state", "weight", "reason", "evidence", "step", "parent")
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    rollout_id: str
    adapter_id: str
    from_state: str
    to_state: str
    weight: float
    reason: str
    evidence: _containers.ScalarMap[str, float]
    step: int
    parent: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., rollout_id: _Optional[str] = ..., adapter_id: _Optional[str] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., weight: _Optional[float] = ..., reason: _Optional[str] = ..., evidence: _Optional[_Mapping[str, float]] = ..., step: _Optional[int] = ..., parent: _Optional[str] = ...) -> None: ...

class DriftSignal(_message.Message):
    __slots__ = ("meta", "adapter_id", "dataset_id", "signal", "severity", "detail", "evidence")
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    adapter_id: str
    dataset_id: str
    signal: str
    severity: DriftSeverity
    detail: str
    evidence: _containers.ScalarMap[str, float]
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., adapter_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., signal: _Optional[str] = ..., severity: _Optional[_Union[DriftSeverity, str]] = ..., detail: _Optional[str] = ..., evidence: _Optional[_Mapping[str, float]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("meta", "source_topic", "source_partition", "source_offset", "key", "value", "consumer", "reason", "failed_at")
    META_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PARTITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.EventMeta
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes
    value: bytes
    consumer: str
    reason: str
    failed_at: _timestamp_pb2.Timestamp
    def __init__(self, meta: _Optional[_Union[_common_pb2.EventMeta, _Mapping]] = ..., source_topic: _Optional[str] = ..., source_partition: _Optional[int] = ..., source_offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., consumer: _Optional[str] = ..., reason: _Optional[str] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
