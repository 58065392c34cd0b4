"""`json.loads` for the texts read one by one in hot loops (each chunk the proxy forwards, each request-log line),
at half its cost.

`json.loads(text)` is `JSONDecoder().decode`: two whitespace regex passes around the C scanner. A server's
chunk has no whitespace around it, so the scanner alone (`raw_decode`) reads it; anything else (leading
whitespace, or text that is not JSON) goes to `json.loads`, which reads or refuses it exactly as before.
"""

from __future__ import annotations

import json

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
"""JSON's own (RFC 8259 §2), the only characters json.loads allows after a value."""


def loads(text: str) -> object:
    """As `json.loads(text)`: the value, or ValueError for anything that is not one JSON text."""
    try:
        doc, end = _DECODER.raw_decode(text)
    except ValueError:
        return json.loads(text)
    if end != len(text) and text[end:].strip(_WHITESPACE):
        return json.loads(text)  # raises json's own "Extra data" error
    return doc


def loads_bytes(data: bytes) -> object:
    """As `json.loads(data)`; a body in UTF-16/32 or with a BOM goes to json's own encoding detection."""
    try:
        return loads(data.decode())
    except ValueError:  # UnicodeDecodeError included
        return json.loads(data)
