"""The contract between checks/ and the grader: for every graded cell, fresh cases from a
seed, the student's answer run on them as plain data, and a verdict reached from the
grader's own inputs, which names the cause of a wrong answer and never crashes on bad data."""

import pytest
import torch

import checks
from checks.core import judged, roundtrip
from tests.answers import solution

NB1 = ['test_stage1', 'test_stage2', 'test_stage3', 'test_stage4']
NB2 = ['test_dlogits', 'test_row_sum', 'test_negative_column', 'test_pull']
NB3 = ['test_step1', 'test_step2', 'test_step3', 'test_step4', 'test_step5']
NB4 = ['test_backward', 'test_first_steps', 'test_no_grad_step']  # and test_trained, whose answer is trained
FUNCTIONS = NB1 + NB2 + NB3 + NB4
NOTEBOOK = {**dict.fromkeys(NB1, 1), **dict.fromkeys(NB2, 2), **dict.fromkeys(NB3, 3), **dict.fromkeys(NB4, 4)}


def answer_of(gid, edits=()):
    """The solution's answer to graded cell gid, with (cell id, old, new) edits."""
    cells = ('forward', 'backward', 'train_step') if NOTEBOOK[gid] == 4 else ()
    return solution(NOTEBOOK[gid], *cells, edits=edits)[checks.spec(gid).answer]


def verdicts(gid, answer, seed=1):
    spec = checks.spec(gid)
    return [judged(spec, answer, case) for case in spec.cases(seed)]


def test_an_unknown_grade_id_is_a_key_error():
    with pytest.raises(KeyError):
        checks.spec('test_nothing')


@pytest.mark.parametrize('gid', FUNCTIONS)
def test_the_solution_is_right_on_every_case_of_any_seed_and_on_the_visible_case(gid):
    answer = answer_of(gid)
    for seed in (1, 987654321):
        assert verdicts(gid, answer, seed) == [None] * len(checks.spec(gid).cases(seed))
    assert judged(checks.spec(gid), answer, checks.spec(gid).visible_case()) is None


def test_every_graded_cell_of_the_four_notebooks_has_a_spec():
    assert sorted(checks.specs()) == sorted(FUNCTIONS + ['test_trained'])


@pytest.mark.parametrize('gid', FUNCTIONS)
def test_cases_come_from_the_seed_alone_and_never_hold_the_answer(gid):
    spec = checks.spec(gid)
    a, b, c = spec.cases(3), spec.cases(3), spec.cases(4)
    if gid == 'test_row_sum':
        return  # a number: nothing to draw
    first = 'parameters' if 'parameters' in a[0] and gid in NB4 else None
    first = first or next(k for k in a[0] if isinstance(a[0][k], torch.Tensor) and a[0][k].is_floating_point())
    if first == 'parameters':
        a, b, c = ([x | {'parameters': x['parameters'][1]} for x in cs] for cs in (a, b, c))
    assert not set(getattr(spec, 'returns', [])) & set(a[0])
    assert all(torch.equal(x[first], y[first]) for x, y in zip(a, b))
    assert not any(torch.equal(x[first], y[first]) for x, y in zip(a, c))
    assert all(x[first].dtype == torch.float64 for x in a)


def test_notebook_1_cases_vary_the_batch_width_vocabulary_embedding_and_context():
    sizes = [case['sizes'] for case in checks.spec('test_stage4').cases(1)]
    for key in ('n', 'n_hidden', 'vocab_size', 'n_embd', 'block_size'):
        assert len({s[key] for s in sizes}) >= 3, key
    visible = checks.spec('test_stage4').visible_case()['sizes']
    assert visible['vocab_size'] != 27 and visible['n_embd'] != 10 and visible['block_size'] != 3


@pytest.mark.parametrize('gid', FUNCTIONS)
def test_what_the_kernel_hands_back_survives_torch_load_without_pickle(gid):
    spec = checks.spec(gid)
    case = spec.visible_case()
    outputs = spec.run(answer_of(gid), case)
    assert spec.judge(case, roundtrip(outputs)) is None


MALFORMED = [None, 3, 'passed', [], {}, {'values': 3}, {'values': {}}, {'error': 5}, {'values': {'dlogits': 'x'}},
             {'values': {'dh': torch.zeros(0)}}, {'values': {'dh': torch.full((6, 9), float('nan'))}},
             {'values': {'dbngain': {'not_plain': 'ndarray'}}}, {'values': {'dC': [torch.zeros(2)]}}]


@pytest.mark.parametrize('gid', FUNCTIONS + ['test_trained'])
@pytest.mark.parametrize('outputs', MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_outputs_get_a_sentence_never_an_exception(gid, outputs):
    verdict = checks.spec(gid).judge(checks.spec(gid).visible_case(), outputs)
    assert isinstance(verdict, str) and verdict


def test_hand_in_judges_in_the_kernel_when_nothing_grades_it(capsys):
    from checks.handin import hand_in
    hand_in('test_stage2', answer_of('test_stage2'))
    assert 'right on 4 fresh batches' in capsys.readouterr().out
    with pytest.raises(AssertionError, match='dW2'):
        hand_in('test_stage2', answer_of('test_stage2', [('stage2', 'dW2 = h.T @ dlogits', 'dW2 = 2 * h.T @ dlogits')]))


def test_autograd_is_blocked_at_the_engine_while_an_answer_runs():
    def sneaky(dlogits, h, W2):
        with torch.enable_grad():
            W2 = W2.clone().requires_grad_()
            b2 = torch.zeros(W2.shape[1], requires_grad=True)
            hh = h.clone().requires_grad_()
            (torch.tanh(hh) @ W2 + b2).mul(dlogits).sum().backward()
        return hh.grad, W2.grad, b2.grad, hh.grad
    assert 'autograd' in verdicts('test_stage2', sneaky)[0]


# ---------------------------------------------------------------- mistakes the cases now catch (issue 8 item 5)

DB1_BUGS = {'mean': 'db1 = dhprebn.mean(0)', 'zeros': 'db1 = torch.zeros_like(dhprebn[0])',
            'flipped': 'db1 = -dhprebn.sum(0)'}


@pytest.mark.parametrize('bug', DB1_BUGS)
def test_a_wrong_db1_loses_stage_4_although_batchnorm_would_hide_it(bug):
    answer = answer_of('test_stage4', [('stage4', 'db1 = dhprebn.sum(0)', DB1_BUGS[bug])])
    for seed in (1, 2, 3):
        assert all(v and 'db1' in v for v in verdicts('test_stage4', answer, seed))


HARD_CODED = {
    'zeros(27, 10)': [('stage4', 'dC = torch.zeros_like(C)', 'dC = torch.zeros(27, 10, dtype=C.dtype)')],
    'view(-1, 10)': [('stage4', 'demb.view(-1, C.shape[1])', 'demb.view(-1, 10)')],
    'view(n, 3, 10)': [('stage4', 'demb = dembcat.view(emb.shape)', 'demb = dembcat.view(-1, 3, 10)')],
}


@pytest.mark.parametrize('bug', HARD_CODED)
def test_a_hard_coded_vocabulary_embedding_or_context_loses_stage_4(bug):
    answer = answer_of('test_stage4', HARD_CODED[bug])
    for seed in (1, 2):
        assert sum(v is not None for v in verdicts('test_stage4', answer, seed)) >= 2
    visible = judged(checks.spec('test_stage4'), answer, checks.spec('test_stage4').visible_case())
    assert 'size' in visible


def test_a_hard_coded_number_of_classes_loses_stage_1():
    answer = answer_of('test_stage1', [('stage1', 'num_classes=logits.shape[1]', 'num_classes=27')])
    assert sum(v is not None for v in verdicts('test_stage1', answer)) >= 2


# ---------------------------------------------------------------- notebooks 2 to 4

def test_pasted_answers_to_notebook_2s_questions_fail_on_fresh_probabilities():
    pasted = torch.tensor([5, 0, 13, 1, 9, 2] * 20)
    assert all(verdicts('test_negative_column', lambda probs, Yb: pasted[:Yb.shape[0]]))
    assert all(verdicts('test_pull', lambda probs, Yb: torch.full((Yb.shape[0],), 0.9, dtype=probs.dtype)))
    assert verdicts('test_row_sum', 0) == [None] and verdicts('test_row_sum', 1.0)[0]


def test_an_integer_negative_column_is_never_told_to_hold_whole_indices():
    wrong = verdicts('test_negative_column', lambda probs, Yb: probs.argmax(1))
    assert all(v and 'whole column indices' not in v for v in wrong)
    assert 'whole column indices' in verdicts('test_negative_column', lambda probs, Yb: Yb.double())[0]


def test_a_bessel_slip_in_step_5_is_named_on_the_visible_case():
    answer = answer_of('test_step5', [('step5', 'n / (n - 1) * bnraw', 'bnraw')])
    assert 'Bessel' in judged(checks.spec('test_step5'), answer, checks.spec('test_step5').visible_case())


def test_a_train_step_that_ignores_its_learning_rate_loses_its_points():
    answer = answer_of('test_no_grad_step', [('train_step', 'p.add_(grad, alpha=-lr)', 'p.add_(grad, alpha=-0.1)')])
    found = [v for v in verdicts('test_no_grad_step', answer) if v]
    assert len(found) >= 3 and all('use the lr argument' in v for v in found)
    assert 'lr argument' in judged(checks.spec('test_no_grad_step'), answer, checks.spec('test_no_grad_step').visible_case())


def test_a_hard_coded_vocabulary_loses_the_backward_pass_of_notebook_4():
    answer = answer_of('test_backward', [('backward', 'F.one_hot(Yb, probs.shape[1])', 'F.one_hot(Yb, 27)')])
    assert sum(v is not None for v in verdicts('test_backward', answer)) >= 3


def test_the_first_wrong_gradient_in_backward_order_is_named():
    answer = answer_of('test_backward', [('backward', 'dh = dlogits @ W2.T', 'dh = 2 * dlogits @ W2.T')])
    verdict = judged(checks.spec('test_backward'), answer, checks.spec('test_backward').visible_case())
    assert 'in backward order the first is dbngain' in verdict


def test_first_steps_catch_a_backward_that_goes_wrong_after_a_few_steps():
    right, calls = answer_of('test_first_steps'), []

    def backward(*args):
        calls.append(1)
        grads = list(right(*args))
        if len(calls) > 5:
            grads[3] = 2 * grads[3]  # dW2
        return tuple(grads)
    assert 'at training step 5' in verdicts('test_first_steps', backward)[0]


def test_the_trained_network_is_trained_with_train_step_and_measured_against_the_graders_bar():
    step = answer_of('test_no_grad_step')
    spec = checks.spec('test_trained')
    [case] = spec.cases(1, steps=1000)
    trained = roundtrip(spec.run(step, case))
    assert spec.judge(case, trained) is None

    def idle_step(parameters, Xb, Yb, lr):  # returns a loss, changes nothing
        return torch.tensor(3.3)
    assert 'above the bar' in spec.judge(case, roundtrip(spec.run(idle_step, case)))
    [strict] = spec.cases(1, steps=200_000)  # the grader's steps set the bar, not the notebook's
    assert 'above the bar' in spec.judge(strict, trained)
    assert 'not written yet' in spec.judge(case, spec.run(lambda *args: None, case))
    assert 'seven trained' in spec.judge(case, {'values': {'parameters': trained['values']['parameters'][:3]}})


def test_notebook_4s_forward_pass_the_checks_and_the_chunked_one_agree():
    """One forward pass: the checks' (checks.training.forward), notebook 4's locked cell (which
    tools/bench.py runs too) and notebook 1's chunked one (helpers.forward_atoms) compute the same."""
    from checks.training import forward
    from helpers import forward_atoms, init_params
    notebook = solution(4, 'forward')['forward']
    g = torch.Generator().manual_seed(5)
    params = [p.detach() for p in init_params(13, 5, 9, 2, g=g, dtype=torch.float64)]
    Xb, Yb = torch.randint(0, 13, (7, 2), generator=g), torch.randint(0, 13, (7,), generator=g)
    loss, saved = forward(params, Xb, Yb)
    loss_nb, saved_nb = notebook(params, Xb, Yb)
    atoms = forward_atoms(params, Xb, Yb)
    assert torch.allclose(loss, loss_nb, rtol=1e-12) and torch.allclose(loss, atoms['loss'], rtol=1e-12)
    for name, mine in zip(saved, saved_nb):
        assert torch.allclose(saved[name], mine, rtol=1e-12, atol=1e-14), name
        assert torch.allclose(saved[name], atoms[name], rtol=1e-12, atol=1e-14), name


def test_gradients_that_share_storage_are_told_to_clone():
    answer = answer_of('test_stage3', [('stage3', 'dhprebn = dbndiff.clone()', 'dhprebn = dbndiff')])
    verdict = judged(checks.spec('test_stage3'), answer, checks.spec('test_stage3').visible_case())
    assert 'dbndiff and dhprebn share their storage' in verdict and '.clone()' in verdict


def test_demb_viewing_dembcat_is_sharing_that_does_no_harm():
    answer = answer_of('test_stage4')  # demb = dembcat.view(emb.shape): one storage, both right
    assert verdicts('test_stage4', answer) == [None] * 4


def test_the_visible_first_steps_check_names_the_first_wrong_gradient_in_backward_order():
    from checks.core import GradingError
    from checks.training import expect_first_steps
    mismatches = [(3, 'dC differs from PyTorch'), (3, 'dW2 is transposed'), (4, 'db2 is all zeros')]
    with pytest.raises(GradingError, match='in backward order, is dW2 at step 3'):
        expect_first_steps(mismatches, 100, 100)
