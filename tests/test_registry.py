"""The registry: names to classes, clear errors for unknown names, strategies added by plugin files."""

from __future__ import annotations

import sys

import pytest

from kdbench.errors import KdbenchError
from kdbench.registry import Registry, load_plugin_file
from kdbench.strategies import STRATEGIES

PLUGIN = '''
from kdbench.strategies import DistillationStrategy, register_strategy


@register_strategy("my-plugin-kd", family="response", paper="a test plugin")
class MyPluginKD(DistillationStrategy):
    defaults = {"weight": 0.5, "tau": 2.0}

    def loss(self, batch):
        return None
'''


@pytest.fixture
def isolated_strategies(monkeypatch):
    """The strategy registry as it is now, restored after the test (plugins register globally)."""
    monkeypatch.setattr(STRATEGIES, "_items", dict(STRATEGIES._items))
    yield STRATEGIES
    for name in [name for name in sys.modules if name.startswith("kdbench_plugin_")]:
        monkeypatch.delitem(sys.modules, name)


def test_a_registered_object_is_found_by_its_name():
    registry = Registry("widget")

    @registry.register("spanner")
    class Spanner:
        pass

    assert registry.get("spanner") is Spanner
    assert "spanner" in registry
    assert list(registry) == registry.names() == ["spanner"]


def test_an_unknown_name_is_refused_listing_the_valid_ones():
    registry = Registry("widget")
    registry.register("spanner")(object)
    registry.register("hammer")(int)
    with pytest.raises(KdbenchError, match=r"^unknown widget 'saw': valid: hammer, spanner$"):
        registry.get("saw")


def test_a_name_cannot_be_taken_twice_by_different_objects():
    registry = Registry("widget")
    registry.register("spanner")(object)
    registry.register("spanner")(object)  # the same object again is harmless (a re-import)
    with pytest.raises(KdbenchError, match="'spanner' is already registered"):
        registry.register("spanner")(int)


def test_the_built_in_strategies_are_registered():
    assert "scratch" in STRATEGIES
    assert STRATEGIES.get("scratch").family == "baseline"


def test_an_unknown_strategy_is_refused_listing_the_registered_ones():
    with pytest.raises(KdbenchError, match="unknown strategy 'nosuch': valid: .*scratch"):
        STRATEGIES.get("nosuch")


def test_a_plugin_file_registers_its_strategy(tmp_path, isolated_strategies):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(PLUGIN)
    load_plugin_file(plugin)
    strategy = STRATEGIES.get("my-plugin-kd")
    assert (strategy.name, strategy.family, strategy.paper) == ("my-plugin-kd", "response", "a test plugin")
    assert strategy.resolve_hparams({"tau": "3"}) == {"weight": 0.5, "tau": 3.0}


def test_loading_a_plugin_file_twice_registers_it_once(tmp_path, isolated_strategies):
    plugin = tmp_path / "twice_plugin.py"
    plugin.write_text(PLUGIN)
    load_plugin_file(plugin)
    load_plugin_file(str(plugin))
    assert STRATEGIES.names().count("my-plugin-kd") == 1


def test_a_missing_plugin_file_is_refused(tmp_path):
    with pytest.raises(KdbenchError, match="plugin file '.*absent.py' does not exist"):
        load_plugin_file(tmp_path / "absent.py")


def test_a_plugin_that_fails_to_import_is_refused_naming_the_error(tmp_path, isolated_strategies):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text("import no_such_module_anywhere\n")
    with pytest.raises(KdbenchError, match="broken_plugin.py' failed to import: ModuleNotFoundError"):
        load_plugin_file(plugin)
    assert not [name for name in sys.modules if name.startswith("kdbench_plugin_broken_plugin")]


def test_a_plugin_with_an_unknown_family_is_refused(tmp_path, isolated_strategies):
    plugin = tmp_path / "family_plugin.py"
    plugin.write_text(PLUGIN.replace('family="response"', 'family="telepathy"'))
    with pytest.raises(KdbenchError, match="unknown strategy family 'telepathy': valid: baseline"):
        load_plugin_file(plugin)
    plugin.write_text(PLUGIN)  # once fixed, the same file loads
    load_plugin_file(plugin)
    assert "my-plugin-kd" in STRATEGIES


def test_two_plugin_files_with_the_same_name_both_load(tmp_path, isolated_strategies):
    for folder, name in (("a", "first-kd"), ("b", "second-kd")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "strategies.py").write_text(PLUGIN.replace("my-plugin-kd", name))
        load_plugin_file(tmp_path / folder / "strategies.py")
    assert "first-kd" in STRATEGIES and "second-kd" in STRATEGIES


def test_a_registry_indexes_lists_and_counts_like_a_mapping():
    registry = Registry("widget")
    registry.register("spanner")(object)
    registry.register("hammer")(int)
    assert registry["hammer"] is int and registry.values() == [object, int] and len(registry) == 2
    with pytest.raises(KdbenchError, match=r"^unknown widget 'saw': valid: hammer, spanner$"):
        registry["saw"]


def test_executors_are_a_registry_of_factories():
    from kdbench.executors import EXECUTORS

    assert EXECUTORS.names() == ["local", "ray"]
