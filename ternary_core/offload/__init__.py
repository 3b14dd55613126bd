"""Whole-model offload (issue 12, docs/device-isa.md): the device's instruction set
(:mod:`.isa`), the program compiler (:mod:`.compiler`), the functional reference machine
(:mod:`.machine`), the op-level ideal cycles of a program (:mod:`.cost`) and the helpers
that name where a device went wrong (:mod:`.check`)."""
