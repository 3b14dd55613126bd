"""JSON from untrusted files (model metadata, config.json, build reports): one parser
whose every failure is one :class:`TernaryError` naming the file or field."""

import json
import sys

from ..errors import TernaryError


def parse_json(text, where, *, expect=None):
    """Parse JSON ``text`` (str or UTF-8 bytes).

    ``expect``: a type (``dict``, ``list``, ...) the value must have. Bad UTF-8, bad
    JSON, nesting too deep for the parser (Python's ``json`` recurses), an integer longer
    than Python converts (``sys.get_int_max_str_digits``) and an object that gives a key
    twice (which value counts is up to the reader) are errors naming ``where``.
    """
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise TernaryError(f"{where}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise TernaryError(f"{where}: not valid JSON ({exc})") from None
    except _DuplicateKey as exc:
        raise TernaryError(f"{where}: key {exc.args[0]!r} is given twice") from None
    except ValueError:      # int('1' * 5000): the only other ValueError json.loads raises
        raise TernaryError(f"{where}: not valid JSON (a number of more than "
                           f"{sys.get_int_max_str_digits():,} digits)") from None
    except RecursionError:
        raise TernaryError(f"{where}: JSON nested too deep") from None
    if expect is not None and not isinstance(value, expect):
        raise TernaryError(f"{where}: expected a JSON {_KINDS.get(expect, expect.__name__)}, "
                           f"not {_KINDS.get(type(value), type(value).__name__)}")
    return value


_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number",
          bool: "boolean", type(None): "null"}


class _DuplicateKey(Exception):
    """A key an object gives twice (not a ValueError: parse_json tells them apart)."""


def _unique_keys(pairs):
    value = dict(pairs)
    if len(value) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value
