"""The pip runner's requirement checks: plain specs pass, anything else is refused
with ``invalid`` (hand-picked cases, then hostile strings from hypothesis)."""

from __future__ import annotations

import operator
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devfleet_agent.pip_runner import InstallError, check_requirement, pip_install, requirement_name
from devfleet_agent.settings import Settings


@pytest.mark.parametrize(
    "spec",
    ["devfleet-component-ledstrip", "foo_bar[ws281x]>=1.2", "foo[a, b]==1.0.post1", "x>=1,<2", "pkg~=0.3"],
)
def test_plain_requirements_pass(spec):
    assert check_requirement(spec) == spec


@pytest.mark.parametrize(
    "spec",
    [
        "--index-url=http://evil",
        "-e .",
        "git+https://github.com/x/y",
        "https://example.com/x.whl",
        "./local/dir",
        "/abs/path.whl",
        "pkg @ https://x",
        "pkg[extra] @ https://x/pkg.whl",
        "pkg===1.0",
        "pkg[]",
        "pkg>=1,",
        "pkg (>=1)",
        "pkg; python_version>'3'",
        "pkg==1.0 --no-deps",
        "pkg\n-r reqs.txt",
        "",
        "x" * 201,
        42,
    ],
)
def test_anything_else_is_refused(spec):
    with pytest.raises(InstallError) as err:
        check_requirement(spec)
    assert err.value.code == "invalid"


def test_requirement_name():
    assert requirement_name("Foo_Bar[x]>=1") == "Foo_Bar"


async def test_pip_is_switched_off_by_default():
    with pytest.raises(InstallError) as err:
        await pip_install(["anything"], settings=Settings(name="n"))
    assert err.value.code == "forbidden"


def test_requirement_name_is_as_written_and_refuses_what_check_refuses():
    assert requirement_name("  devfleet-component-ledstrip[ws281x] >= 1.2 ") == "devfleet-component-ledstrip"
    with pytest.raises(InstallError) as err:
        requirement_name("pkg @ https://x")
    assert err.value.code == "invalid"


# ---- hostile strings ---------------------------------------------------------------------

_names = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?", fullmatch=True)
_versions = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True)
_clauses = st.builds(
    "{}{}".format, st.sampled_from(["==", "!=", "<=", ">=", "<", ">", "~="]), _versions
).filter(lambda c: not c.startswith("~=") or "." in c)


@st.composite
def _named_plain(draw: st.DrawFn) -> tuple[str, str]:
    """``(name, spec)``: a plain requirement and the name it starts with."""
    name, extras, clauses = (
        draw(_names),
        draw(st.lists(_names, max_size=3)),
        draw(st.lists(_clauses, max_size=3)),
    )
    return name, name + (f"[{', '.join(extras)}]" if extras else "") + ",".join(clauses)


_plain = _named_plain().map(lambda pair: pair[1])
# What PEP 508 (and pip) would also take, and a remote command must never pass to pip.
_hostile_tails = st.sampled_from(
    [
        " @ https://evil.example/x.whl",
        "@file:///etc/passwd",
        " ; python_version > '3'",
        ";sys_platform=='linux'",
        " --index-url http://evil",
        " -r reqs.txt",
        "\n-r reqs.txt",
        "\r\n--pre",
        "\t--no-deps",
        "===1.0",
        "[]",
        ",",
        " (>=1.0)",
        "\x00",
        "\u0663",  # an Arabic-Indic digit: not ASCII
    ]
)
_hostile_heads = st.sampled_from(
    ["-e ", "--pre ", "./", "/abs/", "git+https://x/", "https://x/", "file:", "~/"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(pair=_named_plain())
def test_generated_plain_requirements_pass(pair):
    name, spec = pair
    assert check_requirement(spec) == spec
    assert requirement_name(spec) == name


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    spec=st.one_of(
        st.builds(operator.add, _plain, _hostile_tails), st.builds(operator.add, _hostile_heads, _plain)
    )
)
def test_a_url_marker_option_or_path_around_a_plain_requirement_is_refused(spec):
    with pytest.raises(InstallError) as err:
        check_requirement(spec)
    assert err.value.code == "invalid"


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=st.text(alphabet=string.printable + "\u0663\u00e9\x00", max_size=60))
def test_whatever_passes_is_a_bare_name_extras_and_specifiers(spec):
    try:
        text = check_requirement(spec)
    except InstallError as exc:
        assert exc.code == "invalid"
        return
    assert text == spec.strip() and text.isascii() and text[0].isalnum()
    assert not set(text) & set("@;/:()'\"\\\t\n\r\x0b\x0c\x00")
    assert requirement_name(text)[0].isalnum()
