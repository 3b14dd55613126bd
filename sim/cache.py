"""Where builds are cached, and the fingerprint of the sources they are made from."""

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cache_dir(*parts):
    """A per-user cache folder for builds (``$TERNARY_CACHE`` or ``~/.cache/ternary-engine``)."""
    root = Path(os.environ.get("TERNARY_CACHE") or Path.home() / ".cache" / "ternary-engine")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def design_fingerprint(*extra):
    """Hash of the rtl/ and ternary_core/ sources, the Amaranth version and ``extra``
    (parameters, other files' bytes): equal fingerprints make equal gateware."""
    import amaranth

    h = hashlib.sha256()
    # rtl/ with its subpackages, and all of ternary_core/: the ISA the vector machine is
    # generated from, the packing formats the engine decodes, the protocol's constants
    paths = [*(ROOT / "rtl").rglob("*.py"), *(ROOT / "ternary_core").rglob("*.py")]
    for path in sorted(paths):
        h.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    h.update(repr((amaranth.__version__, *extra)).encode())
    return h.hexdigest()[:16]
