"""cmp tells a student what a wrong gradient looks like, one specific hint per mistake."""
import torch

from helpers import ATOL32, RTOL32, cmp, diagnose

g = torch.Generator().manual_seed(0)


def leaf(*shape):
    """A tensor with PyTorch's gradient filled in: L = sum(t * w) gives dL/dt = w."""
    t = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(*shape, generator=g)
    (t * w).sum().backward()
    return t


def hint_for(dt, t, capsys):
    cmp('x', dt, t)
    out = capsys.readouterr().out
    assert 'approximate: False' in out
    return out.split('hint:', 1)[1]


def test_right_gradient_prints_exact_and_no_hint(capsys):
    t = leaf(4, 3)
    cmp('x', t.grad.clone(), t)
    out = capsys.readouterr().out
    assert 'exact: True' in out and 'approximate: True' in out and 'shape ok' in out
    assert 'hint' not in out


def test_rounding_difference_counts_as_approximate(capsys):
    t = leaf(4, 3)
    cmp('x', t.grad * (1 + 1e-7), t)
    out = capsys.readouterr().out
    assert 'exact: False' in out and 'approximate: True' in out and 'hint' not in out


def test_missing_sum_over_a_dim_names_the_dim_and_keepdim(capsys):
    t = leaf(1, 5)
    assert 'sum over dim 0 with keepdim=True' in hint_for(t.grad.expand(8, 5).clone(), t, capsys)


def test_unreduced_extra_dim_names_the_dim_to_sum(capsys):
    t = leaf(5)
    assert 'sum over dim 0 (keepdim=False)' in hint_for(t.grad.expand(8, 5).clone(), t, capsys)


def test_lost_keepdim_is_pointed_out(capsys):
    t = leaf(6, 1)
    assert 'keepdim=True' in hint_for(t.grad.view(6), t, capsys)


def test_transposed_matrix_is_recognised(capsys):
    t = leaf(3, 5)
    assert 'transposed' in hint_for(t.grad.T.clone(), t, capsys)
    square = leaf(4, 4)
    assert 'transposed' in hint_for(square.grad.T.clone(), square, capsys)


def test_missing_bessel_correction_is_named(capsys):
    t = leaf(32, 8)
    hint = hint_for(t.grad * 31 / 32, t, capsys)
    assert '31/32' in hint and 'Bessel' in hint and 'n-1' in hint


def test_flipped_sign_is_named(capsys):
    t = leaf(5, 5)
    assert 'sign' in hint_for(-t.grad, t, capsys)


def test_forgotten_mean_factor_is_named(capsys):
    t = leaf(32, 27)
    assert '32 times' in hint_for(t.grad * 32, t, capsys)


def test_all_zeros_is_named(capsys):
    t = leaf(4, 3)
    assert 'all zeros' in hint_for(torch.zeros(4, 3), t, capsys)


def test_nan_and_inf_are_named(capsys):
    t = leaf(4, 3)
    bad = t.grad.clone()
    bad[1, 2] = float('nan')
    assert 'NaN or inf' in hint_for(bad, t, capsys)
    bad[1, 2] = float('inf')
    assert 'NaN or inf' in hint_for(bad, t, capsys)


def test_not_a_tensor_is_named(capsys):
    t = leaf(4, 3)
    assert 'is a list, not a tensor' in hint_for(t.grad.tolist(), t, capsys)
    cmp('x', None, t)
    assert 'not written yet' in capsys.readouterr().out
    assert 'is None' in diagnose(None, t.grad, 'dx')


def test_a_sum_not_copied_back_says_to_broadcast(capsys):
    t = leaf(4, 6)
    assert 'broadcast it out' in hint_for(t.grad.sum(1, keepdim=True), t, capsys)


def test_a_few_wrong_entries_are_located_and_fan_out_suggested():
    t = leaf(4, 3)
    bad = t.grad.clone()
    bad[2, 1] += 1.0
    hint = diagnose(bad, t.grad, 'dx')
    assert '1 of 12 entries' in hint and '(2, 1)' in hint and 'sum the gradients' in hint
    assert '+=' not in hint  # fan-out gradients are summed; `+=` is not always how


def test_indexed_plus_equals_that_drops_repeated_indices_points_to_index_add():
    C = torch.randn(27, 10, generator=g, requires_grad=True)
    Xb = torch.tensor([[0, 0, 5], [0, 5, 12], [5, 12, 1], [3, 20, 26]])  # 0, 5 and 12 repeat
    demb = torch.randn(4, 3, 10, generator=g)
    (C[Xb] * demb).sum().backward()
    dC = torch.zeros_like(C)
    dC[Xb] += demb
    hint = diagnose(dC, C.grad, 'dC')
    assert 'repeated index' in hint and 'index_add_' in hint and 'dC[Xb] += demb' in hint


def test_approximate_and_the_hint_use_one_tolerance(capsys):
    """Whatever cmp calls not approximate gets a hint, and what it calls approximate gets none:
    near the tolerance, for tiny gradients and for large ones."""
    t = leaf(6, 5)
    cases = []
    for scale in [1.1e-9, 1.1e-8, 1.1e-7, 1e-3, 1.0, 1e3]:
        ref = t.grad / t.grad.abs().max() * scale
        cases += [-ref, ref * 31 / 32, ref + 0.5 * ATOL32, ref + 2 * ATOL32,
                  ref * (1 + 0.5 * RTOL32), ref * (1 + 3 * RTOL32) + 2 * ATOL32]
        for dt in cases[-6:]:
            s = leaf(6, 5)
            s.grad.copy_(ref)
            cmp('x', dt, s)
            out = capsys.readouterr().out
            approximate = 'approximate: True' in out
            assert approximate == torch.allclose(dt, ref, rtol=RTOL32, atol=ATOL32), out
            assert approximate != ('hint:' in out), out


def test_a_sign_flip_of_a_tiny_gradient_is_within_rounding(capsys):
    t = leaf(4, 3)
    t.grad.mul_(1.1e-8 / t.grad.abs().max())  # as small as dlogit_maxes
    cmp('x', -t.grad, t)
    out = capsys.readouterr().out
    assert 'approximate: True' in out and 'hint' not in out


def test_cmp_before_backward_says_what_to_run(capsys):
    t = torch.randn(3, requires_grad=True)
    cmp('x', torch.zeros(3), t)
    assert 'loss.backward()' in capsys.readouterr().out


def test_twice_the_gradient_is_a_factor_of_two_not_bessel(capsys):
    t = leaf(6, 5)
    hint = hint_for(2 * t.grad, t, capsys)
    assert '2 times' in hint and 'Bessel' not in hint and 'n/(n-1)' not in hint


def test_a_sum_kept_over_the_wrong_dimension_names_the_right_one(capsys):
    t = leaf(1, 6)
    hint = hint_for(t.grad.expand(8, 6).sum(1, keepdim=True), t, capsys)
    assert 'summed over the wrong dimension, sum over dim 0 with keepdim=True, not over dim 1' in hint


def test_a_difference_in_stripes_points_to_a_sum_over_the_wrong_dimension(capsys):
    """A mean subtracted over the wrong dimension leaves a number per row plus one per column."""
    t = leaf(8, 6)
    x = torch.randn(8, 6, generator=g)
    wrong = t.grad - x.mean(1, keepdim=True) + x.mean(0, keepdim=True)
    hint = hint_for(wrong, t, capsys)
    assert 'stripes' in hint and 'sum over the wrong dimension' in hint
    assert 'stripes' not in hint_for(t.grad + x, t, capsys)
