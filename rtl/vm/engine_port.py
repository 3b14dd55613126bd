"""How the VM drives the matvec engine: the engine's own ports, seen from the driver."""

from amaranth.lib import wiring

from ..matvec_engine import MatvecEngine

ENGINE_PORTS = ("cmd", "result", "acts", "busy")


class EngineSignature(wiring.Signature):
    """The :class:`~rtl.matvec_engine.MatvecEngine` ports a driver needs, flipped:
    ``cmd`` (Out, stream of (base, m, k)), ``result`` (In, stream of row tiles),
    ``acts`` (the activation buffer's write port, driven: byte-granular ``addr``,
    ``data``, ``en``) and ``busy`` (In). Built from the engine's own signature, so the
    two cannot drift apart; the device top connects (or muxes) them member by member.
    """

    def __init__(self, config):
        engine = MatvecEngine(config)
        engine._MustUse__used = engine.array._MustUse__used = True   # for its signature only
        engine = engine.signature
        super().__init__({name: engine.members[name].flip() for name in ENGINE_PORTS})
