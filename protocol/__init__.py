"""The contract between MNIST Live's programs: message models and their wire encoding.

Trainer, broker, viewer and any third-party subscriber agree on exactly what is defined here
and nothing else. See ``docs/protocol.md`` for the wire format in prose.
"""

from protocol.codec import MAX_MESSAGE_BYTES, ProtocolError, decode, encode, message_json_schema
from protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Architecture,
    DatasetInfo,
    Envelope,
    Evaluation,
    Hyperparameters,
    Message,
    RunFinished,
    RunStarted,
    SamplePrediction,
    TrainingMetrics,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "Architecture",
    "DatasetInfo",
    "Envelope",
    "Evaluation",
    "Hyperparameters",
    "Message",
    "ProtocolError",
    "RunFinished",
    "RunStarted",
    "SamplePrediction",
    "TrainingMetrics",
    "decode",
    "encode",
    "message_json_schema",
]
