"""argparse ``type=`` functions that check a value's range where it is parsed.

Each returns the converted value or raises ``argparse.ArgumentTypeError`` with a message
that argparse prints as ``ternary CMD: error: argument --NAME: MESSAGE`` (exit 2), so a
bad number never reaches the library as a traceback, and zero is refused wherever it
would otherwise quietly mean "the default".
"""

import argparse
import math
import re

_VERILOG_KEYWORDS = frozenset("""
always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign
default defparam design disable edge else end endcase endconfig endfunction endgenerate
endmodule endprimitive endspecify endtable endtask event for force forever fork function
generate genvar highz0 highz1 if ifnone incdir include initial inout input instance integer
join large liblist library localparam macromodule medium module nand negedge nmos nor
noshowcancelled not notif0 notif1 or output parameter pmos posedge primitive pull0 pull1
pulldown pullup pulsestyle_onevent pulsestyle_ondetect rcmos real realtime reg release repeat
rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small specify specparam
strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand
trior trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor xnor xor
logic bit byte int shortint longint
""".split())


def _int(text):
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_int(text):
    """An integer >= 1 (a count or size where 0 means nothing)."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def non_negative_int(text):
    """An integer >= 0 (a seed; a count where 0 has a stated meaning)."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def count_at_most(limit, *, least=0):
    """A type for an integer ``least``..``limit`` (0 or 1; a count where a huge one would
    only exhaust memory or time)."""
    def count(text):
        v = (positive_int if least else non_negative_int)(text)
        if v > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit:,}, got {v:,}")
        return v
    return count


def seed(text):
    """An integer 0..2**32-1: the samplers' seed is 32 bits (xorshift32's state, the
    device's RUN field), so a larger one would quietly repeat a smaller one's samples."""
    v = non_negative_int(text)
    if v > 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"must be at most 4294967295 (seeds are 32 bits), got {v}")
    return v


def positive_float(text):
    """A finite number > 0 (a clock in MHz, a learning rate)."""
    v = _float(text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {text!r}")
    return v


def non_negative_float(text):
    """A finite number >= 0 (a temperature, 0 being greedy)."""
    v = _float(text)
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of 0 or more, got {text!r}")
    return v


def verilog_identifier(text):
    """A plain Verilog identifier that is not a keyword (a module name)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", text) or text in _VERILOG_KEYWORDS:
        raise argparse.ArgumentTypeError(
            f"must be a Verilog identifier (a letter or _, then letters, digits, _ or $; not a "
            f"keyword), got {text!r}")
    return text


def utf8_text(text):
    """Text that encodes as UTF-8. Undecodable bytes in argv reach Python as lone
    surrogates (PEP 383) and would fail much later as a UnicodeEncodeError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            "is not valid UTF-8 text (the terminal or shell passed other bytes); "
            "give the token ids with --prompt-ids instead") from None
    return text


def token_ids(text):
    """Comma- or space-separated token ids, each >= 0, at least one; returned normalised
    (``"1, 2 3"`` -> ``"1,2,3"``). Range against the vocabulary is checked on use."""
    parts = [p for p in re.split(r"\s*,\s*|\s+", text.strip())]
    if not any(parts):
        raise argparse.ArgumentTypeError("expected comma-separated token ids, got none")
    ids = []
    for p in parts:
        if not (p.isascii() and p.isdigit()):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated token ids (integers >= 0), got {p!r} in {text!r}")
        ids.append(str(int(p)))
    return ",".join(ids)


def comma_list(text):
    """A comma-separated list of non-empty names, e.g. ``icebreaker,ulx3s-85f``."""
    items = [p.strip() for p in text.split(",")]
    if not items or not all(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated names with none empty, got {text!r}")
    return items


def png_path(text):
    """An output path ending in .png (the plot is written as PNG whatever the name says)."""
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"the plot is a PNG: give a name ending in .png, got {text!r}")
    return text
