"""Array fields of the messages: 28x28 images, stacks of them, and parameter vectors.

In Python an array field is a NumPy array, validated on the way in (shape, dtype, bounds,
finite values); on the wire it travels as a raw binary frame after the JSON, which holds a
reference to it (see :mod:`protocol.codec`), because pixels as JSON number lists cost an order
of magnitude more to encode and decode. Each type carries the JSON Schema of that reference.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

IMAGE_SIDE = 28
MAX_TILES = 256
MAX_PARAMETERS = 4_000_000


def _image_array(value: Any) -> np.ndarray:
    """Accept a 28x28 uint8 image given as an array or nested lists; refuse anything else."""
    array = np.asarray(value)
    if array.shape != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"image must be {IMAGE_SIDE}x{IMAGE_SIDE}, got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
            raise ValueError(f"image must hold uint8 pixels 0..255, got dtype {array.dtype}")
        array = array.astype(np.uint8)
    return array


def _image_stack(value: Any) -> np.ndarray:
    """Accept ``[n, 28, 28]`` uint8 images (n may be 0), as for a gallery or a weight mosaic."""
    array = np.asarray(value)
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"images must be [n, {IMAGE_SIDE}, {IMAGE_SIDE}], got {array.shape}")
    if array.shape[0] > MAX_TILES:
        raise ValueError(f"at most {MAX_TILES} images, got {array.shape[0]}")
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got dtype {array.dtype}")
    return array


def _float_vector(value: Any) -> np.ndarray:
    """Accept a 1-D float32 vector of finite numbers (model parameters)."""
    array = np.asarray(value)
    if array.ndim != 1 or array.dtype != np.float32:
        raise ValueError(f"parameters must be a 1-D float32 array, got {array.dtype} {array.shape}")
    if array.size > MAX_PARAMETERS:
        raise ValueError(f"at most {MAX_PARAMETERS} parameters, got {array.size}")
    if not np.isfinite(array).all():
        raise ValueError("parameters must be finite")
    return array


def _array_type(validate: Any, description: str, dtype: str, shape: Any) -> Any:
    """An array field: validated by ``validate``, a list in JSON dumps, and described in the
    JSON Schema as the reference to a binary frame that stands for it on the wire."""
    schema = {
        "description": description + ' On the wire: an array reference {"frame": N, "dtype": '
        f'"{dtype}", "shape": [...]}} pointing at binary frame N (little-endian, C order).',
        "type": "object",
        "properties": {
            "frame": {"type": "integer", "minimum": 2},
            "dtype": {"const": dtype},
            "shape": shape,
        },
        "required": ["frame", "dtype", "shape"],
    }
    return Annotated[
        np.ndarray,
        PlainValidator(validate),
        PlainSerializer(lambda a: a.tolist(), when_used="json"),
        WithJsonSchema(schema),
    ]


ImageArray = _array_type(_image_array, "A 28x28 uint8 image.", "uint8", {"const": [28, 28]})
ImageStack = _array_type(
    _image_stack,
    "n 28x28 uint8 images.",
    "uint8",
    {
        "type": "array",
        "prefixItems": [
            {"type": "integer", "minimum": 0, "maximum": MAX_TILES},
            {"const": 28},
            {"const": 28},
        ],
        "items": False,
        "minItems": 3,
    },
)
FloatVector = _array_type(
    _float_vector,
    "A float32 vector.",
    "float32",
    {
        "type": "array",
        "prefixItems": [{"type": "integer", "minimum": 0}],
        "items": False,
        "minItems": 1,
    },
)
