"""What the device core needs to know of a vector machine: the memory spaces its
command engine serves, from the ISA's one definition."""

from .vm_commands import VmSpaces


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
