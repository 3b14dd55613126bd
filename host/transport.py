"""Byte transports to a device: a serial port (pyserial) or the simulated board's pipes."""

import os
import select
import time
from abc import ABC, abstractmethod

from .errors import DeviceAbsent, LinkClosed


class Transport(ABC):
    """A byte stream to a device. ``read`` returns what arrived within ``timeout``
    seconds (possibly nothing); it raises :class:`LinkClosed` if the link is gone."""

    name = "transport"

    @abstractmethod
    def write(self, data): ...

    @abstractmethod
    def read(self, timeout): ...

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    def __init__(self, port, baud=115200):
        try:
            import serial
        except ImportError:
            raise DeviceAbsent("pyserial is not installed (pip install pyserial)") from None
        try:
            self._port = serial.Serial(port, baud, timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceAbsent(f"cannot open serial port {port}: {exc}") from None
        self.name = f"serial {port} at {baud} baud"
        self.baud = baud

    def write(self, data):
        import serial
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkClosed(f"{self.name}: {exc}") from None

    def read(self, timeout):
        import serial
        try:
            self._port.timeout = max(0.0, timeout)
            first = self._port.read(1)
            if not first:
                return b""
            return first + self._port.read(self._port.in_waiting)
        except (serial.SerialException, OSError) as exc:
            raise LinkClosed(f"{self.name}: {exc}") from None

    def close(self):
        self._port.close()


class PipeTransport(Transport):
    """The link to a child process that speaks the protocol on stdin/stdout."""

    def __init__(self, proc, name="simulated board"):
        self.proc = proc
        self.name = name
        self._out = proc.stdout.fileno()

    def _gone(self):
        code = self.proc.poll()
        err = b""
        if self.proc.stderr is not None:
            try:
                err = self.proc.stderr.read() or b""
            except (OSError, ValueError):
                pass
        detail = err.decode(errors="replace").strip().splitlines()
        return LinkClosed(f"the {self.name} exited (status {code})" +
                          (f": {detail[-1]}" if detail else ""))

    def write(self, data):
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, OSError, ValueError):
            raise self._gone() from None

    def read(self, timeout):
        ready, _, _ = select.select([self._out], [], [], max(0.0, timeout))
        if not ready:
            if self.proc.poll() is not None:
                raise self._gone()
            return b""
        data = os.read(self._out, 1 << 16)
        if not data:
            raise self._gone()
        return data

    def close(self):
        """End the child: close its input (it exits on EOF), then make sure."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()

    def stats_line(self):
        """The harness's closing statistics (after :meth:`close`)."""
        try:
            return (self.proc.stderr.read() or b"").decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""


class SimulatedBoardTransport(PipeTransport):
    """Start the simulated board (building it on first use) and talk to it."""

    # sdram_image: the simulated SDRAM's content at start (sim.board.start_board's back
    # door), passed through unchanged
    def __init__(self, config, *, max_payload=None, phy=None, log=None, vm_limits=None,
                 sdram_image=None):
        import sys

        from sim.board import DEFAULT_PHY, start_board

        t0 = time.monotonic()
        phy = phy or DEFAULT_PHY
        try:
            proc = start_board(config, max_payload=max_payload, phy=phy, log=log or sys.stderr,
                               vm_limits=vm_limits, sdram_image=sdram_image)
        except OSError as exc:
            raise DeviceAbsent(f"cannot start the simulated board: {exc}") from None
        super().__init__(proc, name=f"simulated board ({phy} PHY)")
        self.start_seconds = time.monotonic() - t0
