"""How the device core wires a vector machine: the memory spaces its command engine
serves (from the ISA's one definition) and the matvec engine it shares."""

from .vm_commands import VmSpaces


def vm_spaces(vm):
    """The :class:`VmSpaces` of ``vm``: its own ``vm_spaces`` if it states them (a test
    double), else the spaces of :mod:`ternary_core.offload.isa` at ``vm.limits``."""
    own = getattr(vm, "vm_spaces", None)
    if own is not None:
        return own
    raise NotImplementedError("isa spaces")


def connect_vm(m, vm, cmds):
    """Give ``vm`` the matvec engine of the command engine ``cmds`` while it runs (a
    machine without an ``engine`` port, e.g. a test double, gets nothing)."""
    if "engine" not in vm.signature.members:
        return
    raise NotImplementedError("engine port")
