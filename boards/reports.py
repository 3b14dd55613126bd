"""Resources and Fmax from the tools' machine-readable reports."""


from ternary_core.errors import TernaryError
from ternary_core.formats.json_text import parse_json

# nextpnr's cell-type names per resource, for iCE40 and ECP5.
RESOURCES = {
    "luts": ("ICESTORM_LC", "TRELLIS_COMB"),
    "bram": ("ICESTORM_RAM", "DP16KD"),
    "spram": ("ICESTORM_SPRAM",),
    "dsp": ("ICESTORM_DSP", "MULT18X18D"),
}


def read_json_object(path, what):
    """The JSON object in ``path``; anything else (unreadable, not JSON, not an object,
    nested past Python's recursion limit) is a :class:`TernaryError` naming ``what`` and
    the file."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise TernaryError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    return parse_json(text, f"the {what} {path}", expect=dict)


def parse_nextpnr_report(path):
    """Utilisation, and each clock's achieved Fmax beside its constraint (MHz), from
    ``nextpnr --report``."""
    rep = read_json_object(path, "nextpnr report")
    try:
        util = rep.get("utilization", {})
        out = {}
        for key, names in RESOURCES.items():
            used = sum(util.get(n, {}).get("used", 0) for n in names)
            total = sum(util.get(n, {}).get("available", 0) for n in names)
            out[key], out[f"{key}_total"] = used, total
        clocks = {k: {"achieved": float(v["achieved"]), "constraint": float(v["constraint"])}
                  for k, v in rep.get("fmax", {}).items() if v.get("achieved")}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise TernaryError(f"cannot read the nextpnr report {path}: unexpected layout ({exc})") from None
    return {"utilization": out, "clocks": clocks}


def missed_clocks(clocks):
    """The names of the clocks (``{name: {"achieved", "constraint"}}`` in MHz, as
    :func:`parse_nextpnr_report` gives them and a build report keeps them) below their
    constraint."""
    return [n for n, c in clocks.items() if c["achieved"] < c["constraint"]]


def parse_yosys_stat(path):
    """Cell counts by type after synthesis (``stat -json``)."""
    stat = read_json_object(path, "Yosys statistics")
    try:
        cells = stat["design"].get("num_cells_by_type", {})
        return {k: int(v) for k, v in cells.items() if not k.startswith("$scopeinfo")}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise TernaryError(f"cannot read the Yosys statistics {path}: unexpected layout ({exc})") from None
