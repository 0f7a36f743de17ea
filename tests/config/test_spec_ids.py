"""Run ids and the canonical field order, pinned: a refactor of the spec classes must not
change them (every finished run folder and every plan is keyed by them). Change a pinned
value only together with a stated reason, e.g. a new field or a data generator's version."""

import pytest

from nnopt.config.spec import DataSpec, ModelSpec, OptimizerSpec, RunSpec, SpecError, parse_spec

PLUGIN_PY = "def make(*args, **kwargs):\n    return None\n"  # hashed into source_sha256
PLUGIN_SPEC = {
    "data": {"name": "python", "loader": "plug:make", "kwargs": {"n": 60}},
    "model": {"kind": "python", "factory": "plug:make", "kwargs": {"width": 4}},
    "optimizer": {"name": "python", "factory": "plug:make", "lr": 0.1},
}


def _plugin_spec(folder) -> RunSpec:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plug.py").write_text(PLUGIN_PY)
    return parse_spec(PLUGIN_SPEC, code_root=folder)


def test_known_specs_keep_their_run_ids():
    assert parse_spec({}).run_id == "e88c4594c61d5945"  # includes the mnist1d generator version
    assert parse_spec({"optimizer": {"name": "sgd", "lr": 0.1}, "seed": 3}).run_id == "99bb34e80a6138c6"


def test_a_plugin_spec_keeps_its_run_id_wherever_its_code_lies(tmp_path):
    here, there = _plugin_spec(tmp_path / "a"), _plugin_spec(tmp_path / "b")
    assert here.run_id == there.run_id == "db5121c6cfff9a17"  # code_root is not hashed
    assert here.model.code_root == str((tmp_path / "a").resolve())
    assert {here.data.source_sha256, here.model.source_sha256, here.optimizer.source_sha256} == {
        "f2cc659ef82c1247e672d3a58846ed9e6a1d2cd85332474da1e965120f3914f2"
    }


PLUGIN_KEYS = ["kwargs", "source_sha256", "code_root"]


def test_the_canonical_order_of_the_plugin_sections_is_kept(tmp_path):
    """Plan files and run records are JSON in field order; they compare as text."""
    canonical = _plugin_spec(tmp_path).to_dict()
    assert list(canonical["data"])[-6:] == ["partition", "loader", *PLUGIN_KEYS, "fingerprint"]
    assert list(canonical["model"])[-6:] == ["head", "residual", "factory", *PLUGIN_KEYS]
    assert list(canonical["optimizer"])[-6:] == ["alpha", "rho", "factory", *PLUGIN_KEYS]
    assert list(canonical["model"])[:2] == ["kind", "depth"]
    assert parse_spec(canonical, code_root=tmp_path) == _plugin_spec(tmp_path)  # round trip


@pytest.mark.parametrize("section, cls, code_key", [
    ("data", DataSpec, "loader"), ("model", ModelSpec, "factory"),
    ("optimizer", OptimizerSpec, "factory"),
])  # fmt: skip
def test_every_plugin_section_checks_its_fields_alike(section, cls, code_key):
    part = cls()
    assert getattr(part, code_key) is None and part.kwargs == {} and part.code_root is None
    with pytest.raises(SpecError, match=rf"{section}\.{code_key}: expected 'module.path:callable'"):
        parse_spec({section: {code_key: "no_colon"}})
    with pytest.raises(SpecError, match=rf"{section}\.kwargs: expected a mapping"):
        parse_spec({section: {"kwargs": [1]}})
    with pytest.raises(SpecError, match=rf"{section}\.source_sha256: expected a non-empty string"):
        parse_spec({section: {"source_sha256": ""}})
    with pytest.raises(SpecError, match=rf"{section}\.kwargs: only read when {section}\.\w+ is 'python'"):
        parse_spec({section: {"kwargs": {"a": 1}}})


def test_the_plugin_fields_refuse_a_clash_or_an_unknown_position():
    from dataclasses import dataclass

    from nnopt.config.fields import plugin_fields

    class Clash:
        kwargs: dict = None

    with pytest.raises(TypeError, match="Clash: plug-in fields clash"):
        plugin_fields("factory")(Clash)
    with pytest.raises(TypeError, match="no field 'nowhere'"):
        plugin_fields("factory", before="nowhere")(type("Empty", (), {}))

    @dataclass(frozen=True)
    @plugin_fields("hook", before="last")
    class Section:
        first: int = 1
        last: int = 2

    assert [f for f in Section.__dataclass_fields__] == [
        "first", "hook", "kwargs", "source_sha256", "code_root", "last"
    ]
    assert Section(hook="m:f").hook == "m:f" and Section().kwargs == {}
