"""Specs read back from the plan are the specs that were planned: equal, hashable, same id."""

from nnopt.config.spec import parse_spec
from nnopt.store.plan_file import spec_from_canonical


def test_a_spec_from_the_plan_equals_the_parsed_one_and_is_hashable():
    spec = parse_spec({"data": {"name": "spirals", "n_samples": 60},
                       "model": {"depth": 1, "width": 4}})  # fmt: skip
    back = spec_from_canonical(spec.to_dict())
    assert back == spec and back.run_id == spec.run_id
    assert {back.data: 1}[spec.data] == 1  # the runner caches datasets by DataSpec
