"""A fingerprint of the design's sources, for caches of builds made from them."""

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def design_fingerprint(*extra):
    """Hash of rtl/ and ternary_core/ sources, the Amaranth version and ``extra``
    (parameters, other files' bytes): equal fingerprints make equal gateware."""
    import amaranth

    h = hashlib.sha256()
    # rtl/ with its subpackages (rtl/vm, rtl/decode); ternary_core/ and the ISA the vector
    # machine is generated from
    paths = [*(ROOT / "rtl").rglob("*.py"), *(ROOT / "ternary_core").glob("*.py"),
             *(ROOT / "ternary_core" / "offload").glob("*.py")]
    for path in sorted(paths):
        h.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    h.update(repr((amaranth.__version__, *extra)).encode())
    return h.hexdigest()[:16]
