"""The contract between MNIST Live's programs: message models and their wire encoding.

Trainer, broker, viewer and any third-party subscriber agree on exactly what is defined here
and nothing else. See ``docs/protocol.md`` for the wire format in prose.
"""

from protocol.codec import (
    MAX_MESSAGE_BYTES,
    ProtocolError,
    decode,
    decode_control,
    encode,
    encode_control,
    message_json_schema,
)
from protocol.control import ControlCommand
from protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    STATE_KINDS,
    Architecture,
    DatasetInfo,
    Envelope,
    Evaluation,
    FirstLayerWeights,
    Hyperparameters,
    HyperparametersTuned,
    Message,
    ModelWeights,
    RunFinished,
    RunStarted,
    RunStatus,
    SamplePrediction,
    TrainingMetrics,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "STATE_KINDS",
    "Architecture",
    "ControlCommand",
    "DatasetInfo",
    "Envelope",
    "Evaluation",
    "FirstLayerWeights",
    "Hyperparameters",
    "HyperparametersTuned",
    "Message",
    "ModelWeights",
    "ProtocolError",
    "RunFinished",
    "RunStarted",
    "RunStatus",
    "SamplePrediction",
    "TrainingMetrics",
    "decode",
    "decode_control",
    "encode",
    "encode_control",
    "message_json_schema",
]
