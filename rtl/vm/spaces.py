"""What the device core needs to know of a vector machine: the memory spaces its
command engine serves (:class:`VmSpaces`, from the ISA's one definition), and how a
device build makes its machine."""

from ternary_core import protocol as P
from ternary_core.errors import TernaryError
from ternary_core.offload.isa import SPACES, Space

from .layouts import LOAD_DATA_BITS

# The weight store of a device with the machine: block RAM is then what runs out first
# (rtl.weight_store's "packed": 72 DP16KD for the shipped model instead of 80). The board
# build and the simulated board both use it, so the simulation is of the bitstream's RTL.
VM_WEIGHT_STORE = "packed"


class VmSpaces:
    """What the command engine knows of the machine's memory spaces: for each space id,
    its link bytes per word (0: no such space), its depth in words and whether the host
    may write it; and which space holds the token ids.

    Parameters
    ----------
    spaces : dict
        ``{space_id: (link_bytes, depth, writable)}``; link bytes 1..8.
    tokens_space : int
        The space RUN writes the fed ids into and reads the generated ids from.
    run_end : int
        Largest ``pos0 + n_feed + n_new`` a RUN may ask for (the tokens it touches end
        below it).
    space_bits : int
        Width of the ``space`` field of the machine's ports.
    """

    def __init__(self, spaces, tokens_space, run_end, space_bits):
        for sid, (nbytes, depth, _) in spaces.items():
            if not 0 <= sid < 1 << space_bits:
                raise ValueError(f"space id {sid} does not fit space_bits={space_bits}")
            if not 1 <= nbytes <= LOAD_DATA_BITS // 8:
                raise ValueError(f"space {sid}: link bytes must be 1..{LOAD_DATA_BITS // 8}, not {nbytes}")
            if not 1 <= depth <= 1 << P.MEM_ADDR_BITS:
                raise ValueError(f"space {sid}: depth must be 1..2**{P.MEM_ADDR_BITS}, not {depth}")
        if tokens_space not in spaces:
            raise ValueError(f"tokens_space {tokens_space} is not one of the spaces")
        self.spaces, self.tokens_space = dict(spaces), tokens_space
        self.run_end, self.space_bits = run_end, space_bits


def make_vm(config, limits):
    """The vector machine (rtl/vm) for an engine ``config`` and model ``limits``."""
    try:
        from .machine import VectorMachine
    except ImportError:
        raise TernaryError("this build has no vector machine (rtl/vm/machine.py): only a "
                           "matvec-only device can be built; use --offload matvec") from None
    return VectorMachine(limits.with_engine(config), engine_config=config)


def vm_spaces(vm):
    """The :class:`VmSpaces` of ``vm``: its own ``vm_spaces`` if it states them (a test
    double), else the spaces of :mod:`ternary_core.offload.isa` at ``vm.limits``."""
    own = getattr(vm, "vm_spaces", None)
    if own is not None:
        return own
    return spaces_for(vm.limits)


def spaces_for(limits):
    """The :class:`VmSpaces` of a machine built with ``limits`` (a DeviceLimits)."""
    table = {int(s): (info.link_bytes, limits.depth(s), info.uploadable) for s, info in SPACES.items()
             if limits.depth(s)}             # (a device without SDRAM has no space SDRAM)
    space_bits = max(table).bit_length()
    return VmSpaces(table, int(Space.TOKENS), limits.context + 1, space_bits)
