"""Where a BitLinear's integer product is computed: the :class:`MatvecBackend` interface
that the float reference and the integer decode hand their matvecs to, and the numpy
golden model behind it (host/ adds the device's)."""

from .golden import matvec


class MatvecBackend:
    """Computes ``W~ . x_q`` for named BitLinear layers of a loaded model."""

    name = "backend"

    def prepare(self, model):
        """Called once before generation (a device uploads weights here)."""

    def run(self, names, x_q):
        """``[W~_name . x_q for name in names]`` as int32 arrays (one shared int8 input)."""
        raise NotImplementedError

    def close(self):
        pass


class GoldenBackend(MatvecBackend):
    """The bit-exact integer golden model, in numpy."""

    name = "reference"

    def prepare(self, model):
        self.trits = {n: b.trits for n, b in model.bitlinears.items()}

    def run(self, names, x_q):
        return [matvec(self.trits[n], x_q) for n in names]
