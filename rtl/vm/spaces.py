"""What the device core needs to know of a vector machine: the memory spaces its
command engine serves, from the ISA's one definition."""

from ternary_core.errors import TernaryError

from ..vm_commands import VmSpaces


# The weight store of a device with the machine: block RAM is then what runs out first
# (rtl.weight_store's "packed": 72 DP16KD for the shipped model instead of 80). The board
# build and the simulated board both use it, so the simulation is of the bitstream's RTL.
VM_WEIGHT_STORE = "packed"


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
    from ternary_core.offload.isa import SPACES, Space

    table = {int(s): (info.link_bytes, limits.depth(s), info.uploadable) for s, info in SPACES.items()}
    space_bits = max(table).bit_length()
    return VmSpaces(table, int(Space.TOKENS), limits.context + 1, space_bits)
