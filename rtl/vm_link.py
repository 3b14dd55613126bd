"""What the device core needs to know of a vector machine: the memory spaces its
command engine serves, from the ISA's one definition."""

from .vm_commands import VmSpaces


def vm_spaces(vm):
    """The :class:`VmSpaces` of ``vm``: its own ``vm_spaces`` if it states them (a test
    double), else the spaces of :mod:`ternary_core.offload.isa` at ``vm.limits``."""
    own = getattr(vm, "vm_spaces", None)
    if own is not None:
        return own
    raise NotImplementedError("isa spaces")
