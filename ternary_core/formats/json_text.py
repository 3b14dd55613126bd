"""JSON from untrusted files (model metadata, config.json, build reports): one parser
whose every failure is one :class:`TernaryError` naming the file or field."""

import json

from ..errors import TernaryError


def parse_json(text, where, *, expect=None):
    """Parse JSON ``text`` (str or UTF-8 bytes).

    ``expect``: a type (``dict``, ``list``, ...) the value must have. Bad UTF-8, bad
    JSON and nesting too deep for the parser (Python's ``json`` recurses) are errors
    naming ``where``.
    """
    try:
        value = json.loads(text)
    except UnicodeDecodeError as exc:
        raise TernaryError(f"{where}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise TernaryError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise TernaryError(f"{where}: JSON nested too deep") from None
    if expect is not None and not isinstance(value, expect):
        raise TernaryError(f"{where}: expected a JSON {_KINDS.get(expect, expect.__name__)}, "
                           f"not {_KINDS.get(type(value), type(value).__name__)}")
    return value


_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number",
          bool: "boolean", type(None): "null"}
