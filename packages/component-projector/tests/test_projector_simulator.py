from __future__ import annotations

import serial

from devfleet_projector.simulator import ProjectorSimulator


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(port: serial.Serial, data: bytes, until: bytes, count: int = 1) -> bytes:
    port.write(data)
    got = b""
    while got.count(until) < count:
        chunk = port.read(1)
        assert chunk, f"no answer to {data!r}, got {got!r}"
        got += chunk
    return got


def test_epson_simulator_on_a_pty_with_a_fake_clock() -> None:
    clock = FakeClock()
    with ProjectorSimulator("epson", warmup=30, cooldown=20, clock=clock) as sim:
        port = serial.serial_for_url(sim.path, timeout=2)
        try:
            assert ask(port, b"\r", b":") == b":"
            assert ask(port, b"PWR?\r", b":") == b"PWR=00\r:"
            assert ask(port, b"SOURCE 30\r", b":") == b"ERR\r:"  # standby refuses
            assert ask(port, b"PWR ON\r", b":") == b":"
            assert ask(port, b"PWR?\r", b":") == b"PWR=02\r:"
            assert ask(port, b"MUTE ON\r", b":") == b"ERR\r:"  # warming refuses
            clock.now += 30
            assert ask(port, b"PWR?\r", b":") == b"PWR=01\r:"
            assert ask(port, b"SOURCE A0\r", b":") == b":"
            assert ask(port, b"SOURCE?\r", b":") == b"SOURCE=A0\r:"
            assert ask(port, b"MUTE ON\r", b":") == b":"
            assert ask(port, b"MUTE?\r", b":") == b"MUTE=ON\r:"
            clock.now += 7200
            assert ask(port, b"LAMP?\r", b":") == b"LAMP=1202\r:"
            assert ask(port, b"ERR?\r", b":") == b"ERR=00\r:"
            assert ask(port, b"FOO BAR\r", b":") == b"ERR\r:"
            assert ask(port, b"PWR OFF\r", b":") == b":"
            assert ask(port, b"PWR ON\r", b":") == b"ERR\r:"  # cooling refuses power on
            clock.now += 20
            assert sim.power == "off"
        finally:
            port.close()


def test_benq_simulator_echoes_and_answers() -> None:
    clock = FakeClock()
    with ProjectorSimulator("benq", warmup=5, clock=clock) as sim:
        port = serial.serial_for_url(sim.path, timeout=2)
        try:
            assert ask(port, b"\r*pow=?#\r", b"#", 2) == b"*pow=?#\r\n*POW=OFF#"
            assert ask(port, b"\r*sour=hdmi#\r", b"#", 2).endswith(b"*Block item#")
            assert ask(port, b"\r*pow=on#\r", b"#", 2).endswith(b"*POW=ON#")
            port.read(2)
            assert ask(port, b"\r*mute=on#\r", b"#", 2).endswith(b"*Block item#")
            port.read(2)
            clock.now += 5
            assert ask(port, b"\r*sour=RGB#\r", b"#", 2).endswith(b"*SOUR=RGB#")
            port.read(2)
            assert ask(port, b"\r*ltim=?#\r", b"#", 2).endswith(b"*LTIM=1200#")
            port.read(2)
            assert ask(port, b"\r*bogus#\r", b"#", 2).endswith(b"*Illegal format#")
        finally:
            port.close()


def test_unplugged_simulator_is_silent_until_replugged() -> None:
    with ProjectorSimulator("epson") as sim:
        port = serial.serial_for_url(sim.path, timeout=0.2)
        try:
            sim.unplug()
            port.write(b"PWR?\r")
            assert port.read(10) == b""
            sim.replug()
            assert ask(port, b"PWR?\r", b":") == b"PWR=00\r:"
        finally:
            port.close()
    sim.stop()  # idempotent
