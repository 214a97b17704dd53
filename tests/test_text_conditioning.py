"""Text encoder and cross-attention (models/text.py) in the U-Net: padding, the empty prompt, one-token
prompts, classifier-free guidance over the empty prompt with every sampler."""
import pytest
import torch

import models
import sde_lib
import solvers
from configs.default import get_default_config
from models.text import CrossAttnBlock, TextEncoder, masked_softmax


def randomise(net, seed=0):
    """Random weights everywhere (zero-initialised projections would hide the conditioning)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


def prompt_config():
    config = get_default_config()
    config.model.text_vocab_size = 40
    config.model.cross_attn_resolutions = (8, 4)
    config.model.text = dict(dim=16, depth=1, heads=2, max_len=16, cross_attn_heads=2)
    config.model.nf = 16
    return config


def test_masked_softmax_zero_on_padding_and_empty_rows():
    logits = torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    w = masked_softmax(logits, mask)
    assert (w[~mask] == 0).all()
    assert torch.allclose(w[:2].sum(-1), torch.ones(2))
    assert (w[2] == 0).all()
    assert torch.allclose(w[1], torch.softmax(logits[1], -1))


def test_cross_attention_weights_on_padding_are_exactly_zero():
    torch.manual_seed(0)
    enc, block = randomise(TextEncoder(10, 16, 2, 2, 12)), randomise(CrossAttnBlock(8, 16, heads=2))
    tokens = torch.tensor([[3, 4, 5, 0, 0, 0], [7, 0, 0, 0, 0, 0]])
    ctx, mask = enc(tokens)
    h = torch.randn(2, 8, 4, 4)
    out, w = block(h, ctx, mask, return_weights=True)
    assert w.shape == (2, 2, 16, 6)
    assert (w[0, :, :, 3:] == 0).all() and (w[1, :, :, 1:] == 0).all()
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 16))
    # the empty prompt attends to nothing: the block is exactly the identity
    ctx0, mask0 = enc(torch.zeros(2, 6, dtype=torch.long))
    assert torch.equal(block(h, ctx0, mask0), h)


def test_unet_output_is_invariant_to_padding_length():
    net = randomise(models.get_model(prompt_config()))
    x, label = torch.randn(3, 1, 8, 8), torch.rand(3)
    short = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0], [9, 0, 0, 0]])
    long = torch.cat([short, torch.zeros(3, 9, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a, b = net(x, label, short), net(x, label, long)
        other = net(x, label, torch.tensor([[3, 4, 5, 7], [7, 8, 0, 0], [9, 0, 0, 0]]))
    assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert (a[0] - other[0]).abs().max() > 1e-3          # a word matters, padding does not
    assert torch.allclose(a[1:], other[1:], atol=1e-5)


def test_one_token_prompts_act_as_a_class_embedding():
    """With one word per prompt, every cross-attention block adds proj(W_v e(word)) at every position:
    a per-word vector independent of the image, i.e. a class embedding (measured against the
    class-conditional net in bench/prompts_digits.py)."""
    enc, block = randomise(TextEncoder(11, 16, 1, 2, 4)), randomise(CrossAttnBlock(8, 16, heads=2))
    words = torch.arange(1, 11)[:, None]
    ctx, mask = enc(torch.cat([words, torch.zeros(10, 3, dtype=torch.long)], 1))
    table = block.proj(block.v(ctx[:, 0]))                       # [10 words, 8 channels]
    for seed in (0, 1):
        h = torch.randn(10, 8, 4, 4, generator=torch.Generator().manual_seed(seed))
        added = block(h, ctx, mask) - h
        assert torch.allclose(added, table[:, :, None, None].expand_as(added), atol=1e-5)


def test_score_fn_takes_tokens_and_none_is_the_empty_prompt():
    config = prompt_config()
    net = randomise(models.get_model(config))
    sde = sde_lib.get_sde(config)
    x, t = torch.randn(2, 1, 8, 8), torch.full((2,), 0.5)
    tokens = torch.tensor([[3, 4, 0], [5, 0, 0]])
    with torch.no_grad():
        uncond = models.get_score_fn(sde, net)(x, t)
        empty = models.get_score_fn(sde, net, y=torch.zeros(2, 3, dtype=torch.long))(x, t)
        cond = models.get_score_fn(sde, net, y=tokens)(x, t)
    assert torch.equal(uncond, empty)
    assert (cond - uncond).abs().max() > 1e-3


def test_cfg_over_the_empty_prompt_with_every_sampler():
    """The prompt net under CFG runs with every sampler (shapes, finite values); that CFG samples the
    prompted distribution is checked on the exact oracle in tests/test_guidance.py."""
    config = prompt_config()
    net = randomise(models.get_model(config))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.3)
    sde = sde_lib.get_sde(config)
    tokens = torch.tensor([[3, 4, 5]]).expand(2, -1)
    cond = models.get_score_fn(sde, net, y=tokens)
    guided = solvers.classifier_free_guidance(cond, models.get_score_fn(sde, net), 2.0)
    for name, spec in solvers.SAMPLERS.items():
        kw = {} if name == "ode" else {"steps": 3}
        if name == "ode":
            kw = {"rtol": 1e-2, "atol": 1e-2}
        with torch.no_grad():
            x, info = solvers.sample(sde, guided, (2, 1, 8, 8), sampler=name, seeds=[0, 1], **kw)
        assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all(), name
        assert info.nfe > 0


@pytest.mark.parametrize("bad", [dict(text_vocab_size=40, cross_attn_resolutions=()),
                                 dict(text_vocab_size=0, cross_attn_resolutions=(4,))])
def test_unet_refuses_half_a_prompt_net(bad):
    with pytest.raises(ValueError, match="prompt-conditional"):
        models.UNet(image_size=8, num_channels=1, nf=16, ch_mult=(1, 2), **bad)
