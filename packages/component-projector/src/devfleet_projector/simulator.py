"""A projector simulator on a pty, speaking Epson ESC/VP21 or BenQ RS-232.

It is written independently of :mod:`devfleet_projector.protocols` (it parses
and answers the wire format itself), so a codec bug is not hidden by sharing
code with the thing it talks to.

Behaviour modelled:

- power states off → warming (``warmup`` s) → on → cooling (``cooldown`` s) → off;
  Epson reports them as ``PWR=00/02/01/03``, BenQ as ``*POW=ON#``/``*POW=OFF#``;
- while off, warming or cooling, everything but power and lamp/error queries is
  refused (Epson ``ERR``, BenQ ``*Block item#``), and power on during cool-down
  (or off during warm-up) is refused too;
- lamp hours grow while the lamp is lit;
- :meth:`ProjectorSimulator.unplug` makes it deaf and mute until
  :meth:`~ProjectorSimulator.replug`; ``response_delay`` delays every answer.

Example::

    with ProjectorSimulator("epson", warmup=0.5) as sim:
        port = serial.serial_for_url(sim.path, timeout=1)
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import time
import tty
from collections.abc import Callable

__all__ = ["ProjectorSimulator"]

_EPSON_SOURCES = frozenset({"10", "11", "14", "20", "30", "41", "42", "52", "53", "A0"})
_BENQ_SOURCES = frozenset(
    {
        "rgb",
        "rgb2",
        "ypbr",
        "hdmi",
        "hdmi2",
        "vid",
        "svid",
        "dvid",
        "usbdisplay",
        "network",
        "dp",
        "hdbaset",
    }
)
_EPSON_POWER = {"off": "00", "on": "01", "warming": "02", "cooling": "03"}


class ProjectorSimulator:
    """A simulated projector behind a pty; connect to :attr:`path`.

    Args:
        protocol: ``epson`` or ``benq``.
        warmup: seconds from power on to lamp on.
        cooldown: seconds from power off to standby.
        lamp_hours: lamp hours at start.
        response_delay: seconds before each answer.
        power: initial power state, ``off`` or ``on``.
        clock: monotonic seconds (inject a fake clock to step time by hand).
    """

    def __init__(
        self,
        protocol: str = "epson",
        *,
        warmup: float = 1.0,
        cooldown: float = 1.0,
        lamp_hours: int = 1200,
        response_delay: float = 0.0,
        power: str = "off",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if protocol not in ("epson", "benq"):
            raise ValueError(f"unknown protocol {protocol!r}")
        if power not in ("off", "on"):
            raise ValueError("power must be 'off' or 'on'")
        self.protocol = protocol
        self.warmup = warmup
        self.cooldown = cooldown
        self.response_delay = response_delay
        self.clock = clock
        self.error_code = "00"
        self.received: list[str] = []
        self._lamp_seconds = lamp_hours * 3600.0
        self._lit_since: float | None = clock() if power == "on" else None
        self._power = power
        self._until = 0.0
        self._source = "30" if protocol == "epson" else "hdmi"
        self._mute = False
        self._plugged = threading.Event()
        self._plugged.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._master = -1
        self._slave = -1
        self.path = ""

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> ProjectorSimulator:
        """Open the pty and start answering in a thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: a plain 8N1 line
        self.path = os.ttyname(self._slave)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="projector-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the pty; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=5)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> ProjectorSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- knobs for tests ---------------------------------------------------------------

    def unplug(self) -> None:
        """Stop answering (input is swallowed) until :meth:`replug`."""
        self._plugged.clear()

    def replug(self) -> None:
        """Answer again."""
        self._plugged.set()

    @property
    def plugged(self) -> bool:
        return self._plugged.is_set()

    @property
    def power(self) -> str:
        """``off``, ``warming``, ``on`` or ``cooling`` (advanced by the clock)."""
        with self._lock:
            self._tick()
            return self._power

    @property
    def lamp_hours(self) -> int:
        with self._lock:
            return self._lamp_hours()

    @property
    def source(self) -> str:
        """The current input's wire code."""
        return self._source

    @property
    def mute(self) -> bool:
        return self._mute

    # ---- the state machine -------------------------------------------------------------

    def _tick(self) -> None:
        now = self.clock()
        if self._power == "warming" and now >= self._until:
            self._power = "on"
        elif self._power == "cooling" and now >= self._until:
            self._power = "off"

    def _lamp_hours(self) -> int:
        seconds = self._lamp_seconds
        if self._lit_since is not None:
            seconds += self.clock() - self._lit_since
        return int(seconds // 3600)

    def _power_on(self) -> bool:
        if self._power == "cooling":
            return False
        if self._power == "off":
            self._power = "warming"
            self._until = self.clock() + self.warmup
            self._lit_since = self.clock()
            self._tick()
        return True

    def _power_off(self) -> bool:
        if self._power == "warming":
            return False
        if self._power == "on":
            self._power = "cooling"
            self._until = self.clock() + self.cooldown
            if self._lit_since is not None:
                self._lamp_seconds += self.clock() - self._lit_since
                self._lit_since = None
            self._tick()
        return True

    # ---- Epson ESC/VP21 ----------------------------------------------------------------

    def _epson(self, line: str) -> bytes:
        cmd = line.strip().upper()
        self._tick()
        ok, err = b":", b"ERR\r:"
        if cmd == "":
            return ok  # the null command
        if cmd == "PWR?":
            return f"PWR={_EPSON_POWER[self._power]}\r:".encode()
        if cmd == "LAMP?":
            return f"LAMP={self._lamp_hours()}\r:".encode()
        if cmd == "ERR?":
            return f"ERR={self.error_code}\r:".encode()
        if cmd == "PWR ON":
            return ok if self._power_on() else err
        if cmd == "PWR OFF":
            return ok if self._power_off() else err
        if self._power != "on":
            return err
        if cmd == "SOURCE?":
            return f"SOURCE={self._source}\r:".encode()
        if cmd == "MUTE?":
            return f"MUTE={'ON' if self._mute else 'OFF'}\r:".encode()
        match = re.fullmatch(r"(SOURCE|MUTE) +(\S+)", cmd)
        if match is None:
            return err
        key, value = match.groups()
        if key == "SOURCE" and value in _EPSON_SOURCES:
            self._source = value
            return ok
        if key == "MUTE" and value in ("ON", "OFF"):
            self._mute = value == "ON"
            return ok
        return err

    # ---- BenQ ----------------------------------------------------------------------------

    def _benq(self, body: str) -> bytes:
        answer = self._benq_answer(body.strip().lower())
        # The projector echoes what it received, then answers.
        return f"*{body}#\r\n*{answer}#\r\n".encode()

    def _benq_answer(self, body: str) -> str:
        self._tick()
        block, illegal = "Block item", "Illegal format"
        key, sep, value = body.partition("=")
        if not sep or not value:
            return illegal
        if key == "pow":
            if value == "?":
                return "POW=ON" if self._power in ("on", "warming") else "POW=OFF"
            if value == "on":
                return "POW=ON" if self._power_on() else block
            if value == "off":
                return "POW=OFF" if self._power_off() else block
            return illegal
        if key == "ltim" and value == "?":
            return f"LTIM={self._lamp_hours()}"
        if key not in ("sour", "mute"):
            return illegal
        if self._power != "on":
            return block
        if key == "sour":
            if value == "?":
                return f"SOUR={self._source.upper()}"
            if value not in _BENQ_SOURCES:
                return "Unsupported item"
            self._source = value
            return f"SOUR={value.upper()}"
        if value == "?":
            return f"MUTE={'ON' if self._mute else 'OFF'}"
        if value not in ("on", "off"):
            return illegal
        self._mute = value == "on"
        return f"MUTE={value.upper()}"

    # ---- the serial side -------------------------------------------------------------

    def _commands(self, buffer: bytearray) -> list[str]:
        """Take complete commands out of ``buffer``."""
        out: list[str] = []
        if self.protocol == "epson":
            while b"\r" in buffer:
                line, _, rest = bytes(buffer).partition(b"\r")
                buffer[:] = rest
                out.append(line.decode("ascii", "replace"))
            return out
        while True:
            start = buffer.find(b"*")
            if start < 0:
                buffer.clear()  # line noise between commands (CRs) is ignored
                return out
            end = buffer.find(b"#", start)
            if end < 0:
                del buffer[:start]
                return out
            out.append(buffer[start + 1 : end].decode("ascii", "replace"))
            del buffer[: end + 1]

    def _answer(self, command: str) -> bytes:
        with self._lock:
            if self.protocol == "epson":
                return self._epson(command)
            return self._benq(command)

    def _serve(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                continue  # EIO while no client holds the slave open
            if not self._plugged.is_set():
                continue  # unplugged: the bytes go nowhere
            buffer += data
            for command in self._commands(buffer):
                self.received.append(command)
                answer = self._answer(command)
                if self.response_delay and self._stop.wait(self.response_delay):
                    return
                if self._plugged.is_set():
                    os.write(self._master, answer)
