"""From measured per-token costs to tokens/s on a board: min(compute, memory, link)."""

import json
from pathlib import Path

REPORTS = Path(__file__).resolve().parent.parent / "boards" / "reports"


def board_fmax_hz(profile):
    """Achieved Fmax from the board's committed build report, else None."""
    path = REPORTS / f"{profile.name}.json"
    if not path.is_file():
        return None, path
    rep = json.loads(path.read_text())
    return rep.get("fmax_mhz", 0) * 1e6 or None, path


def project(profile, per_token, *, clock_hz=None):
    """Tokens/s bounds on ``profile``'s board for the measured per-token costs.

    compute: the engine's cycles per token at the clock (by default the one the board
    runs: its target clock if the committed build met it, else the achieved Fmax);
    memory: one weight word per cycle; link: the bytes per token over the board's UART.
    """
    fmax, report = board_fmax_hz(profile)
    if clock_hz is not None:
        clock, fmax = clock_hz, clock_hz
    else:
        clock = profile.clock_hz if fmax is None else min(profile.clock_hz, fmax)
    cycles = per_token["device_cycles_per_token"]
    bounds = {
        "compute": clock / cycles if cycles else float("inf"),
        "memory": clock / per_token["weight_words_per_token"],
        "link": profile.link_bytes_per_s / per_token["link_bytes_per_token"]
        if per_token["link_bytes_per_token"] else float("inf"),
    }
    bound = min(bounds, key=bounds.get)
    src = f"Fmax {fmax / 1e6:.1f} MHz from {report.name}" if fmax else "no build report yet"
    line = (f"on {profile.name} at {clock / 1e6:.0f} MHz ({src}), UART {profile.baud / 1e6:g} Mbaud: "
            f"compute {bounds['compute']:,.0f}, memory {bounds['memory']:,.0f}, link "
            f"{bounds['link']:,.1f} tokens/s -> {bounds[bound]:,.1f} tokens/s, {bound}-bound")
    return {"board": profile.name, "clock_mhz": clock / 1e6, "fmax_mhz": fmax / 1e6 if fmax else None,
            "baud": profile.baud, "tokens_per_s_compute": bounds["compute"],
            "tokens_per_s_memory": bounds["memory"], "tokens_per_s_link": bounds["link"],
            "tokens_per_s": bounds[bound], "bound": bound, "line": line}
