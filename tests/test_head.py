"""The toolken head sits beside the vocabulary and changes nothing when masked."""

from __future__ import annotations

import pytest
import torch

from toolken_agent.head import ToolkenHead
from toolken_agent.toolkens import Toolkens


def test_masked_toolkens_give_exactly_the_base_models_logits(tiny_lm, small_toolset):
    toolkens = Toolkens.from_priors(tiny_lm, small_toolset, prior="random")
    ids = torch.tensor([[1, 5, 9, 42, 7, 3]])
    with torch.no_grad():
        base = tiny_lm.model(ids).logits.float()
    joint = toolkens.logits(ids, toolkens=False)
    assert joint.shape == (1, 6, tiny_lm.vocab_size + 2)
    assert torch.equal(joint[..., : tiny_lm.vocab_size], base)
    assert torch.isneginf(joint[..., tiny_lm.vocab_size :]).all()


def test_toolken_logits_are_w_dot_h_plus_bias(tiny_lm, small_toolset):
    toolkens = Toolkens.from_priors(tiny_lm, small_toolset, prior="random")
    with torch.no_grad():
        toolkens.head.bias.fill_(0.5)
    ids = torch.tensor([[1, 5, 9]])
    hidden, _ = tiny_lm.hidden_states(ids)
    joint = toolkens.logits(ids)
    expected = hidden.float() @ toolkens.head.weight.T + 0.5
    assert torch.allclose(joint[..., tiny_lm.vocab_size :], expected, atol=1e-6)


def test_head_weights_stay_fp32_on_a_bf16_model(small_toolset):
    from conftest import make_tiny_lm

    lm = make_tiny_lm(dtype=torch.bfloat16)
    toolkens = Toolkens.from_priors(lm, small_toolset, prior="lm-head")
    assert toolkens.head.weight.dtype == torch.float32
    assert toolkens.logits(torch.tensor([[1, 2, 3]])).dtype == torch.float32


def test_select_reorders_rows():
    head = ToolkenHead(torch.arange(6.0).reshape(3, 2))
    sub = head.select([2, 0])
    assert torch.equal(sub.weight, torch.tensor([[4.0, 5.0], [0.0, 1.0]]))


@pytest.mark.real_model
def test_masked_toolkens_match_the_real_default_model(smol_lm):
    from toolken_agent.model import load_model
    from toolken_agent.toolset import load_toolset

    lm = load_model(dtype="float32", engine="transformers")
    toolkens = Toolkens.from_priors(lm, load_toolset("math"))
    ids = lm.tokenizer("What is 12 times 7?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = lm.model(ids).logits.float()
    assert torch.equal(toolkens.logits(ids, toolkens=False)[..., : lm.vocab_size], base)


def test_step_logits_on_bf16_are_exact_fp32_where_the_decision_is_made():
    from conftest import make_tiny_lm

    lm = make_tiny_lm(dtype=torch.bfloat16)
    h = torch.randn(lm.hidden_size, dtype=torch.bfloat16)
    exact = lm.vocab_logits(h)
    fast = lm.step_logits(h)
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    assert torch.equal(fast.max(), exact.max()) and int(fast.argmax()) == int(exact.argmax())


def _crossed_head(mix: float) -> ToolkenHead:
    """Prior rows point at the right tool, trained rows at the wrong one, trained rows fire harder."""
    head = ToolkenHead(torch.eye(3, 4), mix=mix)
    with torch.no_grad():
        head.weight.copy_(3.0 * torch.eye(3, 4)[[1, 2, 0]])
        head.bias.fill_(1.0)
    return head


def test_a_mixed_head_fires_as_the_trained_head_but_ranks_tools_as_the_ensemble():
    hidden = torch.eye(3, 4)  # state k is about tool k
    trained, mixed = _crossed_head(1.0)(hidden), _crossed_head(0.0)(hidden)
    assert torch.equal(mixed.amax(dim=-1), trained.amax(dim=-1))  # whether a toolken fires: unchanged
    assert torch.equal(trained.argmax(dim=-1), torch.tensor([2, 0, 1]))
    assert torch.equal(mixed.argmax(dim=-1), torch.tensor([0, 1, 2]))  # which: the prior's ranking


def test_mix_one_is_exactly_the_plain_head_and_select_keeps_the_mix():
    head = _crossed_head(1.0)
    hidden = torch.randn(5, 4)
    assert torch.equal(head(hidden), torch.nn.functional.linear(hidden, head.weight, head.bias))
    half = _crossed_head(0.5)
    with torch.no_grad():
        half.prior_bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    sub = half.select([2, 0])
    assert sub.mix == 0.5 and torch.equal(sub.prior_bias, torch.tensor([0.3, 0.1]))
    assert torch.equal(sub.prior, half.prior[[2, 0]]) and torch.equal(sub.weight, half.weight[[2, 0]])
