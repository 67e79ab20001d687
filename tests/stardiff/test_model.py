import pytest
import torch

from stardiff.model import DensityNetwork, NetworkConfig, ancestral
from stardiff.model.schedule import SigmoidSchedule

CALIFORNIA = NetworkConfig(
    n_kinds=9,
    dim=32,
    n_heads=4,
    ff_dim=128,
    n_layers=2,
    dropout=0.1,
    head_width=64,
    head_layers=2,
    steps=100,
)
PAPER = NetworkConfig(
    n_kinds=118,
    dim=192,
    n_heads=24,
    ff_dim=2048,
    n_layers=2,
    head_width=512,
    head_layers=5,
    steps=120,
)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_paper():
    net = DensityNetwork(CALIFORNIA)
    assert net.n_parameters() == 47_425
    assert (_count(net.embed), _count(net.encoder), _count(net.head)) == (640, 25_408, 21_377)
    assert DensityNetwork(PAPER).n_parameters() == 3_774_465


def test_schedule_is_sigmoid_and_saved_as_buffers():
    s = SigmoidSchedule(120, 1e-5, 0.1)
    t = torch.linspace(-6, 6, 120, dtype=torch.float64)
    expected = 1e-5 + (0.1 - 1e-5) * torch.sigmoid(t)
    torch.testing.assert_close(s.betas, expected.float())
    net = DensityNetwork(CALIFORNIA)
    state = net.state_dict()
    assert "schedule.betas" in state and "schedule.alpha_bar" in state
    assert net.to(torch.float64).schedule.betas.dtype == torch.float64  # follows .to()


def test_padding_does_not_change_the_request_state():
    torch.manual_seed(0)
    net = DensityNetwork(CALIFORNIA).eval()
    tokens = torch.tensor([[3, 5, 1]])
    values = torch.tensor([[0.3, -1.2, 2.0]])
    req = torch.tensor([9])
    h = net.condition(tokens, values, req)
    padded_t = torch.tensor([[3, 0, 5, 0, 1, 0, 0]])
    padded_v = torch.tensor([[0.3, 7.0, -1.2, -3.0, 2.0, 100.0, 1.0]])  # junk under padding
    h2 = net.condition(padded_t, padded_v, req)
    torch.testing.assert_close(h, h2, rtol=1e-5, atol=1e-6)
    # the order of a set of inputs does not matter either (no positional encoding)
    h3 = net.condition(tokens[:, [2, 0, 1]], values[:, [2, 0, 1]], req)
    torch.testing.assert_close(h, h3, rtol=1e-5, atol=1e-6)


def test_no_inputs_at_all_is_fine():
    net = DensityNetwork(CALIFORNIA).eval()
    h = net.condition(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4), torch.tensor([1, 2]))
    assert torch.isfinite(h).all()


@pytest.mark.parametrize("dim,width", [(32, 32), (16, 64), (64, 16)])
def test_head_uses_the_condition_for_every_width_combination(dim, width):
    """The reference dropped the condition when the Transformer width equalled the head width."""
    torch.manual_seed(0)
    cfg = NetworkConfig(
        n_kinds=3,
        dim=dim,
        n_heads=4,
        ff_dim=32,
        n_layers=1,
        head_width=width,
        head_layers=2,
        steps=20,
        dropout=0.0,
    )
    net = DensityNetwork(cfg).eval()
    req = torch.tensor([1, 1])
    cond = net.condition(torch.tensor([[2], [2]]), torch.tensor([[-2.0], [2.0]]), req)
    proj = [c.unsqueeze(1) for c in net.head.project_condition(cond)]
    gen = torch.Generator().manual_seed(0)
    x = ancestral(net.head, net.schedule, proj, lambda: torch.randn(1, 200, 1, generator=gen))
    assert not torch.allclose(x[0], x[1])  # same noise, different condition → different draws
    assert (x[0].mean() - x[1].mean()).abs() > 1e-3


def test_ancestral_last_step_adds_no_noise():
    """With a head that predicts zero noise, the final step is a deterministic rescale."""
    net = DensityNetwork(CALIFORNIA)
    with torch.no_grad():
        for p in net.head.parameters():
            p.zero_()
    proj = [torch.zeros(1, 1, 64)] * 2
    calls = []

    def noise():
        calls.append(1)
        return torch.randn(1, 50, 1)

    x = ancestral(net.head, net.schedule, proj, noise)
    assert len(calls) == net.config.steps  # x_T, then one draw per step except the last
    assert torch.isfinite(x).all()


def test_periodic_features_resolve_values_and_default_configs_are_unchanged():
    from stardiff.model.embedding import TokenEmbedding

    plain = TokenEmbedding(5, 16)
    assert plain.periodic is None and sum(p.numel() for p in plain.parameters()) == 2 * 6 * 16
    torch.manual_seed(0)
    emb = TokenEmbedding(5, 16, periodic=8)
    tokens = torch.tensor([[1, 1, 2]])
    near = emb(tokens, torch.tensor([[0.30, 0.31, 0.30]]))
    # the periodic part moves with the value, so two close values of one kind differ more
    # than the plain embedding alone makes them
    base = emb.bias(tokens) + torch.nn.functional.gelu(emb.weight(tokens) * 0.3)
    assert (near[0, 0] - near[0, 1]).norm() > 0
    assert (near[0, 0] - base[0, 0]).abs().max() > 0  # the periodic term is there
    assert emb.frequency.weight.shape == (6, 8) and emb.periodic.in_features == 16
    cfg = NetworkConfig(n_kinds=4, dim=16, n_heads=2, ff_dim=32, periodic_features=4)
    assert NetworkConfig(**cfg.to_dict()) == cfg
    assert "periodic_features" in NetworkConfig(n_kinds=4).to_dict()  # saved, default 0
