"""Whole-model offload (issue 12): the device's instruction set (:mod:`.isa`), the program
compiler (:mod:`.compiler`) and the functional reference machine (:mod:`.machine`)."""
