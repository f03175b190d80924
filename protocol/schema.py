"""The protocol's JSON Schemas as a strict validator in any language takes them.

pydantic writes a schema that its own validator reads, with an OpenAPI ``discriminator`` that
JSON Schema does not define (Ajv in strict mode refuses it), fields with defaults left out of
``required`` (``kind``, ``protocol`` and ``sent_at``, which the broker nonetheless requires on
the wire) and no ``$schema`` (a draft-07 validator would silently skip ``prefixItems``). This
turns such a schema into a strict JSON Schema 2020-12 document: declared, the discriminator
gone (the ``oneOf`` branches already tell the kinds apart by their ``kind`` constant), and the
fields every message carries required in every branch. What JSON Schema cannot say (a label
within its sample's classes, counts that add up) is in docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def strict(schema: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    """``schema`` (pydantic's) declared as 2020-12, without ``discriminator``; every object
    that has all the ``required`` properties gets them in its ``required`` list."""
    wanted = sorted(required)
    out = _without_discriminator(schema)
    for definition in out.get("$defs", {}).values():
        properties = definition.get("properties", {})
        if wanted and all(name in properties for name in wanted):
            definition["required"] = sorted({*definition.get("required", []), *wanted})
    return {"$schema": DIALECT, **out}


def _without_discriminator(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_discriminator(v) for k, v in value.items() if k != "discriminator"}
    if isinstance(value, list):
        return [_without_discriminator(v) for v in value]
    return value
