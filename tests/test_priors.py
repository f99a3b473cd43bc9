"""Every prior kind gives one row per tool, on the LM head's scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toolken_agent.priors import PRIOR_KINDS, build_priors, mean_row_norm, output_row_mean


@pytest.mark.parametrize("kind", PRIOR_KINDS)
def test_each_prior_kind_gives_one_row_per_tool(tiny_lm, small_toolset, kind):
    rows = build_priors(tiny_lm, small_toolset.specs, kind)
    assert rows.shape == (2, tiny_lm.hidden_size)
    assert rows.dtype == torch.float32
    assert torch.isfinite(rows).all()
    if kind != "random":
        assert torch.allclose(rows.norm(dim=1), torch.full((2,), mean_row_norm(tiny_lm)), rtol=1e-4)


def test_random_prior_is_seeded(tiny_lm, small_toolset):
    a = build_priors(tiny_lm, small_toolset.specs, "random", seed=1)
    assert torch.equal(a, build_priors(tiny_lm, small_toolset.specs, "random", seed=1))
    assert not torch.equal(a, build_priors(tiny_lm, small_toolset.specs, "random", seed=2))


def test_name_prior_is_the_papers_normalized_mean_hidden_state(tiny_lm, small_toolset):
    ids = tiny_lm.tokenizer("weather now", add_special_tokens=False, return_tensors="pt")["input_ids"]
    hidden, _ = tiny_lm.hidden_states(ids)
    expected = F.normalize(hidden[0].float().mean(0), dim=0) * mean_row_norm(tiny_lm)
    assert torch.allclose(build_priors(tiny_lm, small_toolset.specs, "name")[1], expected, atol=1e-5)


def test_lm_head_prior_is_the_mean_output_row_of_the_name_tokens(tiny_lm):
    ids = tiny_lm.tokenizer(" add", add_special_tokens=False)["input_ids"]
    expected = tiny_lm.lm_head.weight[ids].float().mean(0)
    assert torch.allclose(output_row_mean(tiny_lm, ["add"])[0], expected)


def test_description_breaks_ties_between_tools_with_the_same_words(tiny_lm):
    from toolken_agent.tool import ToolSpec

    schema = {"type": "object", "properties": {}}
    a = ToolSpec("location", "Where a company has its headquarters.", schema)
    b = ToolSpec("location", "Where a person was born.", schema)
    same = build_priors(tiny_lm, [a, b], "lm-head")
    assert torch.equal(same[0], same[1])
    mixed = build_priors(tiny_lm, [a, b], "lm-head+description")
    assert not torch.equal(mixed[0], mixed[1])


def test_unknown_kind_is_refused(tiny_lm, small_toolset):
    with pytest.raises(ValueError, match="unknown prior"):
        build_priors(tiny_lm, small_toolset.specs, "magic")
