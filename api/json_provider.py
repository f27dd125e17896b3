"""The API's JSON answers, encoded by orjson.

Flask's own provider encodes with the standard library, which took a tenth of a `GET /status` (bench/README.md);
orjson writes the same JSON several times faster. What orjson does not encode itself (dates, dataclasses, anything
with `__html__`) goes to Flask's own conversions, so an answer means what it meant before. Byte for byte it differs
in two ways only: non-ASCII text is written as UTF-8 rather than escaped, and a number too large for 64 bits makes
the standard library encode that answer instead.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonProvider(DefaultJSONProvider):
    """Flask's provider with orjson as the encoder; `sort_keys` is honoured, `ensure_ascii` is not."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:  # the standard library's own options (indent, separators, ...)
            return super().dumps(obj, **kwargs)
        return self._encoded(obj).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(*args, **kwargs)  # indented for people to read, as Flask does
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(self._encoded(obj, orjson.OPT_APPEND_NEWLINE), mimetype=self.mimetype)

    def _encoded(self, obj: Any, option: int = 0) -> bytes:
        if self.sort_keys:
            option |= orjson.OPT_SORT_KEYS
        try:
            return orjson.dumps(obj, default=self.default, option=OPTIONS | option)
        except orjson.JSONEncodeError:
            # an integer beyond 64 bits, or what neither encoder takes: the standard library says which
            text = super().dumps(obj)
            return (text + "\n" if option & orjson.OPT_APPEND_NEWLINE else text).encode()
