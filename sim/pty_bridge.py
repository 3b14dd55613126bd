"""The simulated board behind a pseudo-terminal: a serial port that pyserial can open.

:class:`PtyBridge` opens a pty pair, starts the simulated board (by default with the
UART PHY: the complete device top a board has, UART included) and moves bytes between
the pty's master side and the board's pipes. Whatever opens the slave side (its path
is :attr:`PtyBridge.port`) talks to the board exactly as to a board on a USB serial
port, so ``ternary generate --backend serial --port <PtyBridge.port>`` runs the host's
real serial path (pyserial, :class:`host.transport.SerialTransport`) end to end.

The baud rate is meaningless on a pty: the kernel accepts any rate pyserial sets
(the board's 3 Mbaud included) and moves bytes as fast as they come. The bridge only
moves bytes; the simulated board's own UART runs at ``sim.board.SIM_DIVISOR`` clocks
per bit, which would be an odd baud at any board clock and need not match anything.

The bridge can damage the line on purpose (:class:`LineFaults`): drop bytes and
corrupt bytes at seeded random positions of each direction, to show that the host's
link (CRC-checked frames, retries) gives the right results or a clear error.

Run by hand: ``python -m sim.pty_bridge [--board icebreaker]`` prints the port and
serves it until interrupted.
"""

import os
import random
import select
import sys
import threading
import tty
from dataclasses import dataclass, field

from .board import start_board


@dataclass
class LineFaults:
    """Faults of one direction of the line: the byte offsets (0 = the first byte that
    crosses in that direction) to drop and to corrupt (XOR with a random non-zero mask).

    Use :meth:`at_random` for a seeded set of positions."""

    drop: frozenset = frozenset()
    corrupt: frozenset = frozenset()
    seed: int = 0
    dropped: int = field(default=0, init=False)
    corrupted: int = field(default=0, init=False)

    def __post_init__(self):
        self._rng = random.Random(self.seed)
        self._offset = 0

    @classmethod
    def at_random(cls, *, drop=0, corrupt=0, span, seed):
        """``drop`` and ``corrupt`` distinct positions drawn uniformly from the first
        ``span`` bytes, from ``seed``."""
        if drop + corrupt > span:
            raise ValueError(f"cannot place {drop + corrupt} faults in {span} bytes")
        rng = random.Random(seed)
        where = rng.sample(range(span), drop + corrupt)
        return cls(frozenset(where[:drop]), frozenset(where[drop:]), seed=rng.randrange(1 << 32))

    @property
    def injected(self):
        return self.dropped + self.corrupted

    def apply(self, data):
        """``data`` as it arrives at the far end."""
        start, self._offset = self._offset, self._offset + len(data)
        if not self.drop and not self.corrupt:
            return data
        out = bytearray()
        for i, byte in enumerate(data, start):
            if i in self.drop:
                self.dropped += 1
                continue
            if i in self.corrupt:
                byte ^= self._rng.randrange(1, 256)
                self.corrupted += 1
            out.append(byte)
        return bytes(out)


class PtyBridge:
    """A simulated board on a pseudo-terminal.

    Parameters
    ----------
    config : EngineConfig
        The engine the simulated board carries (e.g. ``board("icebreaker").engine``).
    phy : str
        ``"uart"`` (default; the device top with its UART) or ``"stream"``.
    to_board, from_board : LineFaults or None
        Faults injected on the host-to-board and board-to-host directions.

    Members
    -------
    port : str
        Path of the pty's slave side, to be opened as a serial port.
    bytes_to_board, bytes_from_board : int
        Bytes that crossed the bridge (before faults).

    Use as a context manager; :meth:`close` stops the board and returns its statistics line.
    """

    def __init__(self, config, *, phy="uart", max_payload=None, to_board=None, from_board=None,
                 log=sys.stderr):
        self.to_board = to_board or LineFaults()
        self.from_board = from_board or LineFaults()
        self.bytes_to_board = self.bytes_from_board = 0
        self.board_stats = ""
        self._proc = start_board(config, max_payload=max_payload, phy=phy, log=log)
        self._master, self._slave = os.openpty()
        # Raw from the start (pyserial makes it raw again when it opens the port): no
        # echo, no line editing, no CR/LF translation of the protocol's bytes. The bridge
        # keeps the slave open so that reading the master never fails with EIO while no
        # client has the port open.
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._host_to_board, daemon=True,
                                          name="pty->board"),
                         threading.Thread(target=self._board_to_host, daemon=True,
                                          name="board->pty")]
        for t in self._threads:
            t.start()

    def _host_to_board(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 1 << 16)
            except OSError:
                return
            self.bytes_to_board += len(data)
            data = self.to_board.apply(data)
            try:
                self._proc.stdin.write(data)
            except (BrokenPipeError, OSError, ValueError):
                return  # the board exited; the host sees silence and says so

    def _board_to_host(self):
        out = self._proc.stdout.fileno()
        while True:
            data = os.read(out, 1 << 16)
            if not data:
                return  # the board exited (after close, or on its own)
            self.bytes_from_board += len(data)
            data = self.from_board.apply(data)
            try:
                os.write(self._master, data)
            except OSError:
                return

    def close(self):
        """Stop the board (EOF on its input ends it) and the bridge; return the board's
        statistics line (``board: N cycles, ...``)."""
        if self._stop.is_set():
            return self.board_stats
        self._stop.set()
        self._threads[0].join()
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except Exception:
            self._proc.kill()
            self._proc.wait()
        self._threads[1].join()
        self.board_stats = (self._proc.stderr.read() or b"").decode(errors="replace").strip()
        os.close(self._master)
        os.close(self._slave)
        return self.board_stats

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None):
    import argparse

    from boards.profiles import BOARDS

    p = argparse.ArgumentParser(prog="python -m sim.pty_bridge",
                                description="Serve a simulated board on a pseudo-terminal.")
    p.add_argument("--board", choices=sorted(BOARDS), default="icebreaker")
    p.add_argument("--phy", choices=["uart", "stream"], default="uart")
    a = p.parse_args(argv)
    with PtyBridge(BOARDS[a.board].engine, phy=a.phy) as bridge:
        print(f"simulated {a.board} board ({a.phy} PHY) on {bridge.port}; try\n"
              f"  ternary generate --backend serial --board {a.board} --port {bridge.port}\n"
              f"Ctrl-C stops it.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    print(bridge.board_stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
