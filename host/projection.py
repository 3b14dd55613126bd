"""From measured per-token costs to tokens/s on a board: min(compute, memory, link)."""

import json
from pathlib import Path

REPORTS = Path(__file__).resolve().parent.parent / "boards" / "reports"
# UART rates the projection also reports: the boards' 3 Mbaud and the faster rates an
# FT2232H reaches (12 Mbaud is its maximum; 8 Mbaud needs a clock divisible to it).
LINK_BAUDS = (3_000_000, 8_000_000, 12_000_000)


def report_path(profile, offload="matvec"):
    """The committed build report of ``profile``'s build ``offload`` (a
    :data:`boards.profiles.BUILDS` key): ``NAME.json`` for the matvec engine alone,
    ``NAME-model.json`` for the build with the vector machine, ``NAME-model-sdram.json``
    for its SDRAM build."""
    return REPORTS / f"{profile.build_name(offload)}.json"


def board_clock(profile, offload="matvec"):
    """``(clock_hz, source)``: the clock ``profile``'s committed build (of ``offload``'s
    device) runs at — its target if the build met it, else the achieved Fmax — and where
    that figure came from."""
    target = profile.build_clock_hz(offload)
    path = report_path(profile, offload)
    if not path.is_file():
        return target, "no build report yet"
    fmax = json.loads(path.read_text()).get("fmax_mhz") or 0
    if not fmax:
        return target, f"no Fmax in {path.name}"
    return min(target, fmax * 1e6), f"Fmax {fmax:.1f} MHz from {path.name}"


def bounds_of(per_token, clock_hz, link_bytes_per_s):
    """Tokens/s bounds of measured per-token costs: ``compute`` (device cycles per token
    at ``clock_hz``), ``memory`` (one weight word a cycle; only where the weights stream,
    i.e. ``per_token`` has ``weight_words_per_token``) and ``link`` (bytes per token
    over the UART)."""
    cycles, link_bytes = per_token["device_cycles_per_token"], per_token["link_bytes_per_token"]
    bounds = {"compute": clock_hz / cycles if cycles else float("inf")}
    if "weight_words_per_token" in per_token:
        bounds["memory"] = clock_hz / per_token["weight_words_per_token"]
    bounds["link"] = link_bytes_per_s / link_bytes if link_bytes else float("inf")
    return bounds


def project(profile, per_token, clock_hz, source):
    """Tokens/s on ``profile``'s board for the measured per-token costs, at ``clock_hz``
    (``source`` says where that clock figure came from): the least of
    :func:`bounds_of`, and the same at the other UART rates (:data:`LINK_BAUDS`).
    Matvec offload, model offload and the bench all project through here.
    """
    bounds = bounds_of(per_token, clock_hz, profile.link_bytes_per_s)
    bound = min(bounds, key=bounds.get)
    line = (f"on {profile.name} at {clock_hz / 1e6:.4g} MHz ({source}), UART {profile.baud / 1e6:g} Mbaud: "
            + ", ".join(f"{k} {v:,.{1 if k == 'link' else 0}f}" for k, v in bounds.items())
            + f" tokens/s -> {bounds[bound]:,.1f} tokens/s, {bound}-bound")
    by_baud = [at_baud(bounds, per_token["link_bytes_per_token"], baud) for baud in LINK_BAUDS]
    line_bauds = ("same clock, other UART rates: " +
                  ", ".join(f"{b['baud'] / 1e6:g} Mbaud {b['tokens_per_s']:,.1f} ({b['bound']})"
                            for b in by_baud) + " tokens/s")
    return {"board": profile.name, "clock_mhz": clock_hz / 1e6, "baud": profile.baud,
            "tokens_per_s_compute": bounds["compute"], "tokens_per_s_memory": bounds.get("memory"),
            "tokens_per_s_link": bounds["link"], "tokens_per_s": bounds[bound], "bound": bound,
            "by_baud": by_baud, "line": line, "line_bauds": line_bauds}


def at_baud(bounds, link_bytes_per_token, baud):
    """The same bounds with the link at ``baud`` (8N1): ``{baud, tokens_per_s_link,
    tokens_per_s, bound}``."""
    link = baud / 10 / link_bytes_per_token if link_bytes_per_token else float("inf")
    b = {**{k: v for k, v in bounds.items() if k != "link"}, "link": link}
    bound = min(b, key=b.get)
    return {"baud": baud, "tokens_per_s_link": link, "tokens_per_s": b[bound], "bound": bound}
