"""A fingerprint of the design's sources, for caches of builds made from them."""

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def design_fingerprint(*extra):
    """Hash of rtl/ and ternary_core/ sources, the Amaranth version and ``extra``
    (parameters, other files' bytes): equal fingerprints make equal gateware."""
    import amaranth

    h = hashlib.sha256()
    for path in sorted([*(ROOT / "rtl").glob("*.py"), *(ROOT / "ternary_core").glob("*.py")]):
        h.update(path.name.encode() + path.read_bytes())
    h.update(repr((amaranth.__version__, *extra)).encode())
    return h.hexdigest()[:16]
