"""The component registry (fresh plugin manager per test, plugins registered directly),
and one real entry point."""

from __future__ import annotations

import importlib.metadata as md
import sys
import textwrap
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devfleet_agent.components import ComponentRegistry, purge_modules
from devfleet_agent.components.registry import canonical_name, may_declare
from devfleet_base import Component, ContractError, hookimpl


class Alpha(Component):
    name = "alpha"
    version = "1.0"


class Beta(Component):
    name = "beta"


def plugin_of(*classes, raises=None):
    """A plugin object whose hook registers ``classes`` (or raises)."""

    class Plugin:
        @hookimpl
        def devfleet_register_components(self, register):
            if raises is not None:
                raise raises
            for cls in classes:
                register(cls)

    return Plugin()


@pytest.fixture
def registry():
    return ComponentRegistry(entry_points=lambda: ())


def test_plugins_register_components_on_a_fresh_manager(registry):
    assert registry.register_plugin(plugin_of(Alpha, Beta), name="ab") == ["alpha", "beta"]
    assert registry.get("alpha").cls is Alpha and registry.get("alpha").plugin == "ab"
    assert [d["name"] for d in registry.describe()] == ["alpha", "beta"]
    assert ComponentRegistry(entry_points=lambda: ()).get("alpha") is None  # nothing shared


def test_a_failing_plugin_is_reported_and_the_others_load(registry):
    registry.register_plugin(
        plugin_of(raises=RuntimeError("no hardware")), name="bad", dist="bad-dist", version="0.3"
    )
    registry.register_plugin(plugin_of(dict), name="notacomponent")
    typo = types.ModuleType("typo")
    typo.devfleet_register_componentz = hookimpl(lambda register: None)
    registry.register_plugin(typo, name="typo")
    registry.register_plugin(plugin_of(Alpha), name="good")
    errors = {e.name: e for e in registry.errors}
    assert set(errors) == {"bad", "notacomponent", "typo"}
    assert "devfleet_register_componentz" in errors["typo"].error
    assert errors["bad"].to_wire() == {
        "name": "bad",
        "dist": "bad-dist",
        "version": "0.3",
        "error": "registration failed: RuntimeError: no hardware",
    }
    assert "not a Component subclass" in errors["notacomponent"].error
    assert list(registry.entries) == ["alpha"]


def test_duplicate_component_names_are_refused(registry):
    registry.register_plugin(plugin_of(Alpha), name="one")
    registry.register_plugin(plugin_of(Alpha), name="two")
    assert registry.get("alpha").plugin == "one"
    assert "already provided by one" in registry.errors[0].error
    with pytest.raises(ContractError):
        registry.add(type("Bad", (Component,), {"name": "no/slash"}))


def test_disabled_names_are_skipped():
    registry = ComponentRegistry(disabled={"beta"}, entry_points=lambda: ())
    assert registry.register_plugin(plugin_of(Alpha, Beta), name="ab") == ["alpha"]


def _module(tmp_path, name, body):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))


GOOD = """
    from devfleet_base import Component, hookimpl

    class Gamma(Component):
        name = "gamma"
        version = "{version}"

    @hookimpl
    def devfleet_register_components(register):
        register(Gamma)
"""


def test_entry_point_import_errors_are_isolated(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _module(tmp_path, "dfx_gamma", GOOD.format(version="1"))
    _module(tmp_path, "dfx_broken", "raise ImportError('libfoo.so.1: cannot open shared object file')")
    _module(tmp_path, "dfx_exits", "import sys; sys.exit(3)")
    group = "devfleet.components"
    eps = [
        md.EntryPoint("broken", "dfx_broken", group),
        md.EntryPoint("exits", "dfx_exits", group),
        md.EntryPoint("gamma", "dfx_gamma", group),
        md.EntryPoint("off", "dfx_does_not_exist", group),
    ]
    registry = ComponentRegistry(disabled={"off"}, entry_points=lambda: eps)
    try:
        registry.load()
        assert list(registry.entries) == ["gamma"]
        errors = {e.name: e.error for e in registry.errors}
        assert errors == {
            "broken": "import failed: ImportError: libfoo.so.1: cannot open shared object file",
            "exits": "import failed: SystemExit: 3",
        }
    finally:
        purge_modules({"dfx_gamma", "dfx_broken", "dfx_exits"})


def test_a_real_entry_point_is_found_and_reloaded_after_an_upgrade(tmp_path, monkeypatch):
    """The one test that reads importlib.metadata: a dist-info on sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(version):
        for old in tmp_path.glob("dfx_delta-*.dist-info"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        info = tmp_path / f"dfx_delta-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: dfx-delta\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("[devfleet.components]\ndelta = dfx_delta\n")
        (info / "RECORD").write_text("dfx_delta.py,,\n")
        _module(
            tmp_path,
            "dfx_delta",
            GOOD.replace("gamma", "delta").replace("Gamma", "Delta").format(version=version),
        )

    install("1.0")
    registry = ComponentRegistry()
    try:
        registry.load()
        assert registry.get("delta").cls.version == "1.0"
        assert registry.get("delta").dist == "dfx-delta" and registry.dists()["dfx-delta"] == "1.0"
        install("2.0")
        registry.load()  # cached: nothing re-read
        assert registry.get("delta").cls.version == "1.0"
        registry.refresh()
        assert registry.get("delta").cls.version == "2.0"
        assert sys.modules["dfx_delta"].Delta is registry.get("delta").cls
    finally:
        purge_modules({"dfx_delta"})


@given(st.text(alphabet="AbZz09-_.~ ", max_size=20))
def test_canonical_name_is_packagings_pep503_name(name):
    # the registry normalises without importing packaging (issue 20); the result is the same
    from packaging.utils import canonicalize_name

    assert canonical_name(name) == canonicalize_name(name)


def _dist_info(root, name, entry_points):
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


@pytest.mark.parametrize(
    ("entry_points", "declares"),
    [
        (None, False),
        ("[console_scripts]\nx = x:main\n", False),
        ("[devfleet.components]\nx = x.plugin\n", True),
        ("[console_scripts]\nx = x:main\n\n[devfleet.components]\nx = x.plugin\n", True),
    ],
)
def test_the_path_scan_agrees_with_importlib_metadata(tmp_path, monkeypatch, entry_points, declares):
    # the registry skips importlib.metadata only when this scan says nothing declares the group
    _dist_info(tmp_path / "site", "somedist", entry_points)
    (tmp_path / "site" / "PKG_plain-1.0.egg-info").write_text(
        "Metadata-Version: 1.0\n"
    )  # a file: no entry points
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), str(tmp_path / "missing")])
    assert may_declare("devfleet.components") is declares
    assert bool(md.entry_points(group="devfleet.components")) is declares


def test_a_zip_or_an_egg_on_the_path_leaves_the_answer_to_importlib_metadata(tmp_path, monkeypatch):
    (tmp_path / "lib.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "lib.zip")])
    assert may_declare("devfleet.components") is True
    (tmp_path / "site" / "old-1.0.egg").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site")])
    assert may_declare("devfleet.components") is True


def test_the_scan_sees_what_the_real_environment_declares():
    # The whole suite's venv installs the example components (editable: dist-info plus a .pth);
    # agent-core tested alone may have none. Either way, what importlib.metadata finds, the
    # scan must not miss (a miss would hide installed components).
    if md.entry_points(group="devfleet.components"):
        assert may_declare("devfleet.components") is True


def test_nothing_declared_means_an_empty_registry_without_importlib_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    reg = ComponentRegistry()
    reg.load()
    assert reg.loaded and reg.entries == {} and reg.errors == []
