"""The page's data: one JSON manifest with every array inlined as base64.

An array becomes ``{"dtype": "f16" | "f32" | "u8", "shape": [...], "b64": "..."}`` (little
endian); ``static/explain.js`` decodes each such object into a typed array.  float16 holds the
arrays only drawn as colours (3 significant digits); float32 the attention probabilities
(the page recomputes the rollout from them), the gradients (values far below float16's
range) and every small array.
"""

from __future__ import annotations

import base64
import json

from minivit.backend import host_xp, to_numpy

DTYPES = {"f16": "<f2", "f32": "<f4", "u8": "u1"}


def encode_array(a, dtype: str = "f32") -> dict:
    """A host or device array -> the manifest's entry for it."""
    np = host_xp()
    a = np.ascontiguousarray(to_numpy(a), dtype=DTYPES[dtype])
    return {"dtype": dtype, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def decode_array(entry: dict):
    """The inverse of ``encode_array`` (tests, and reading a page back)."""
    np = host_xp()
    flat = np.frombuffer(base64.b64decode(entry["b64"]), dtype=DTYPES[entry["dtype"]])
    return flat.reshape(entry["shape"])


def encoded_bytes(obj) -> int:
    """Bytes of base64 text in ``obj`` (a manifest or part of one)."""
    if isinstance(obj, dict):
        if "b64" in obj:
            return len(obj["b64"])
        return sum(encoded_bytes(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(encoded_bytes(v) for v in obj)
    return 0


def manifest_json(manifest: dict) -> str:
    """JSON safe to inline in a <script> element (no "</script>" can appear in it)."""
    return json.dumps(manifest, separators=(",", ":")).replace("<", "\\u003c")


__all__ = ["decode_array", "encode_array", "encoded_bytes", "manifest_json"]
