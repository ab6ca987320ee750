"""Where the console's Wactorz fleet key comes from (issue 21): ``--wactorz-key-file``,
``DEVFLEET_WACTORZ_KEY`` (hex), ``DEVFLEET_WACTORZ_KEY_FILE``, a profile's
``wactorz_key_file``; never printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devfleet_command.cli import main
from devfleet_command.cli_settings import resolve
from devfleet_command.errors import UsageError

KEY = bytes(range(32))


def _flags(**given: Any) -> dict[str, Any]:
    keys = ("broker", "username", "password", "tls_ca", "signing_key_file", "wactorz_key_file", "timeout")
    return {k: given.get(k) for k in keys}


def _key_file(path: Path, key: bytes) -> str:
    path.write_text("  " + key.hex() + "\n")
    return str(path)


def test_the_key_from_the_flag_then_env_then_profile(tmp_path: Path) -> None:
    from_flag = _key_file(tmp_path / "flag.key", b"f" * 32)
    from_env_file = _key_file(tmp_path / "env.key", b"e" * 32)
    from_profile = _key_file(tmp_path / "profile.key", KEY)
    cfg = tmp_path / "console.toml"
    cfg.write_text(f'[default]\nwactorz_key_file = "{from_profile}"\n')
    env = {"DEVFLEET_CONSOLE_CONFIG": str(cfg)}
    assert resolve(_flags(), env).wactorz_key == KEY
    assert resolve(_flags(), {**env, "DEVFLEET_WACTORZ_KEY_FILE": from_env_file}).wactorz_key == b"e" * 32
    assert resolve(_flags(), {**env, "DEVFLEET_WACTORZ_KEY": (b"x" * 16).hex()}).wactorz_key == b"x" * 16
    flagged = resolve(_flags(wactorz_key_file=from_flag), {**env, "DEVFLEET_WACTORZ_KEY": (b"x" * 16).hex()})
    assert flagged.wactorz_key == b"f" * 32
    both = {**env, "DEVFLEET_WACTORZ_KEY_FILE": from_env_file, "DEVFLEET_WACTORZ_KEY": (b"x" * 16).hex()}
    assert resolve(_flags(), both).wactorz_key == b"e" * 32  # a file wins, as on the agent
    assert resolve(_flags(), {"HOME": str(tmp_path / "nohome")}).wactorz_key is None
    assert KEY.hex() not in repr(resolve(_flags(), env))  # never in a repr (or a --debug dump)


@pytest.mark.parametrize(
    ("content", "says"),
    [("not hex at all: s3cret", "does not hold a hex key"), ("\n", "holds an empty key"), ("abc", "hex key")],
)
def test_a_bad_key_file_is_a_usage_error_that_does_not_echo_it(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(UsageError) as exc:
        resolve(_flags(wactorz_key_file=str(path)), {"HOME": str(tmp_path)})
    assert says in exc.value.message and str(path) in exc.value.message
    assert content.strip() == "" or content.strip() not in exc.value.message


def test_the_cli_refuses_a_bad_key_in_one_line_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DEVFLEET_CONSOLE_CONFIG", raising=False)
    monkeypatch.setenv("DEVFLEET_WACTORZ_KEY", "zz-s3cret-zz")
    assert main(["--broker", "mqtt://127.0.0.1:9", "ls"]) == 2
    err = capsys.readouterr().err
    assert "DEVFLEET_WACTORZ_KEY does not hold a hex key" in err and err.count("\n") == 1
    assert "s3cret" not in err
    missing = tmp_path / "missing.key"
    assert main(["--broker", "mqtt://127.0.0.1:9", "--wactorz-key-file", str(missing), "ls"]) == 2
    assert "cannot read the Wactorz key file" in capsys.readouterr().err


def test_the_key_reaches_the_client(tmp_path: Path, monkeypatch: Any) -> None:
    from devfleet_command.commands.context import Context

    seen: list[Any] = []
    monkeypatch.setattr(Context, "fleet", lambda self, **kw: seen.append(self) or _Refused())
    monkeypatch.setenv("HOME", str(tmp_path))
    main(["--broker", "mqtt://127.0.0.1:9", "--wactorz-key-file", _key_file(tmp_path / "k", KEY), "ls"])
    assert [ctx.wactorz_key for ctx in seen] == [KEY]
    assert KEY.hex() not in repr(seen[0]) and repr(KEY) not in repr(seen[0])


class _Refused:
    async def __aenter__(self) -> Any:
        from devfleet_command.errors import ConnectError

        raise ConnectError("not connecting in this test")

    async def __aexit__(self, *exc: object) -> None:
        return None
