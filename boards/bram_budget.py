"""Block RAM a whole-model ULX3S build spends, memory by memory: each of the vector
machine's spaces (as ``rtl.vm.datapath`` builds it for the build's limits) and the
engine's weight store, each synthesized alone with ``synth_ecp5`` (Yosys's own mapping:
DP16KD block RAMs, TRELLIS_DPR16X4 LUT RAMs). The sum is what the design's memories
need, before the small buffers elsewhere (the query buffer, the SR file, FIFOs).

``python -m boards.bram_budget [--sdram]``: the ULX3S-85F's on-chip build, or its SDRAM
build (docs/sdram.md, "Next"); a few minutes (the largest memories take the longest)."""

import argparse
import sys

ECP5_85F_DP16KD = 208


def memory_blocks(mem):
    """``(DP16KD, TRELLIS_DPR16X4)`` of one Amaranth component synthesized alone."""
    from amaranth.back import verilog

    from .cell_stats import synth_cells

    cells = synth_cells(verilog.convert(mem, name="top"), "top", "ecp5")
    return cells.get("DP16KD", 0), cells.get("TRELLIS_DPR16X4", 0)


def budget(limits, engine, log=sys.stderr):
    """``[(memory, words, DP16KD, DPR16X4)]``: every VM space with words at ``limits``, as
    the machine builds it (an XFER space with SDRAM gets the transfer's write port), and
    the engine's weight store (``rtl.vm.spaces.VM_WEIGHT_STORE``) of ``engine``."""
    from ternary_core.offload import isa
    from rtl.vm.datapath import memory_kwargs
    from rtl.vm.memories import SpaceMemory
    from rtl.vm.spaces import VM_WEIGHT_STORE
    from rtl.weight_store import WeightStore

    rows = []
    for sp, kw in memory_kwargs(limits).items():
        words = limits.depth(sp)
        print(f"  {sp.name}: {words:,} words ...", file=log, flush=True)
        mem = SpaceMemory(isa.SPACES[sp].word_bits, words, name=sp.name, **kw)
        rows.append((sp.name, words, *memory_blocks(mem)))
    print(f"  weight store: {engine.weight_words:,} words ...", file=log, flush=True)
    store = WeightStore(engine.weight_words, engine.word_bytes, VM_WEIGHT_STORE)
    rows.append(("weight store", engine.weight_words, *memory_blocks(store)))
    return rows


def main(argv=None):
    from .profiles import board

    ap = argparse.ArgumentParser(prog="python -m boards.bram_budget", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdram", action="store_true",
                    help="the build that streams a model from the SDRAM")
    args = ap.parse_args(argv)
    profile = board("ulx3s-85f")
    limits = profile.vm_sdram_limits if args.sdram else profile.vm_limits
    engine = profile.vm_engine(limits)
    print(f"synthesizing each memory of the ULX3S-85F {'SDRAM' if args.sdram else 'on-chip'} "
          f"build alone (synth_ecp5; minutes) ...", file=sys.stderr, flush=True)
    rows = budget(limits, engine)
    print("| memory | words | DP16KD | LUT RAM (DPR16X4) |\n| --- | ---: | ---: | ---: |")
    for name, words, bram, lutram in rows:
        print(f"| {name} | {words:,} | {bram} | {lutram} |")
    total = sum(r[2] for r in rows)
    print(f"| all | | {total} of {ECP5_85F_DP16KD} | {sum(r[3] for r in rows)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
