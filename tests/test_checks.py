"""The contract between checks/ and the grader: for every graded cell, fresh cases from a
seed, the student's answer run on them as plain data, and a verdict reached from the
grader's own inputs, which names the cause of a wrong answer and never crashes on bad data."""
import subprocess
import sys

import pytest
import torch

import checks
from checks.core import PUBLIC_SEED, judged, roundtrip
from tests.answers import solution
from tests.kit import ROOT

NB1 = ['test_stage1', 'test_stage2', 'test_stage3', 'test_stage4']


def answer_of(gid, edits=()):
    """The solution's answer to graded cell gid, with (cell id, old, new) edits."""
    number = {'test_stage': 1}[gid.rstrip('0123456789')]
    return solution(number, edits=edits)[checks.spec(gid).answer]


def verdicts(gid, answer, seed=1):
    spec = checks.spec(gid)
    return [judged(spec, answer, case) for case in spec.cases(seed)]


def test_an_unknown_grade_id_is_a_key_error():
    with pytest.raises(KeyError):
        checks.spec('test_nothing')


@pytest.mark.parametrize('gid', NB1)
def test_the_solution_is_right_on_every_case_of_any_seed_and_on_the_visible_case(gid):
    answer = answer_of(gid)
    for seed in (1, 987654321):
        assert verdicts(gid, answer, seed) == [None] * len(checks.spec(gid).cases(seed))
    assert judged(checks.spec(gid), answer, checks.spec(gid).visible_case()) is None


@pytest.mark.parametrize('gid', NB1)
def test_cases_come_from_the_seed_alone(gid):
    spec = checks.spec(gid)
    a, b, c = spec.cases(3), spec.cases(3), spec.cases(4)
    first = next(k for k in spec.args if isinstance(a[0][k], torch.Tensor) and a[0][k].is_floating_point())
    assert all(torch.equal(x[first], y[first]) for x, y in zip(a, b))
    assert not any(torch.equal(x[first], y[first]) for x, y in zip(a, c))
    assert all(x[first].dtype == torch.float64 for x in a)


def test_notebook_1_cases_vary_the_batch_width_vocabulary_embedding_and_context():
    sizes = [case['sizes'] for case in checks.spec('test_stage4').cases(1)]
    for key in ('n', 'n_hidden', 'vocab_size', 'n_embd', 'block_size'):
        assert len({s[key] for s in sizes}) >= 3, key
    visible = checks.spec('test_stage4').visible_case()['sizes']
    assert visible['vocab_size'] != 27 and visible['n_embd'] != 10 and visible['block_size'] != 3


@pytest.mark.parametrize('gid', NB1)
def test_what_the_kernel_hands_back_survives_torch_load_without_pickle(gid):
    spec = checks.spec(gid)
    case = spec.visible_case()
    outputs = spec.run(answer_of(gid), case)
    assert spec.judge(case, roundtrip(outputs)) is None


MALFORMED = [None, 3, 'passed', [], {}, {'values': 3}, {'values': {}}, {'error': 5}, {'values': {'dlogits': 'x'}},
             {'values': {'dh': torch.zeros(0)}}, {'values': {'dh': torch.full((6, 9), float('nan'))}},
             {'values': {'dbngain': {'not_plain': 'ndarray'}}}, {'values': {'dC': [torch.zeros(2)]}}]


@pytest.mark.parametrize('gid', NB1)
@pytest.mark.parametrize('outputs', MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_outputs_get_a_sentence_never_an_exception(gid, outputs):
    verdict = checks.spec(gid).judge(checks.spec(gid).visible_case(), outputs)
    assert isinstance(verdict, str) and verdict


def test_hand_in_writes_the_outputs_of_the_graders_inputs_when_graded(tmp_path):
    spec = checks.spec('test_stage2')
    cases = spec.cases(77)
    (tmp_path / 'inputs').mkdir()
    torch.save({'cases': cases}, tmp_path / 'inputs' / 'test_stage2.pt')
    script = ('from tests.answers import solution\nfrom checks.handin import hand_in\n'
              "hand_in('test_stage2', solution(1)['backprop_layer2'])\n")
    run = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True,
                         env={'BPN_HANDIN': str(tmp_path), 'PATH': '/usr/bin:/bin'})
    assert run.returncode == 0, run.stderr
    assert run.stdout == '', 'a graded hand-in prints nothing: its verdict is reached elsewhere'
    outputs = torch.load(tmp_path / 'outputs' / 'test_stage2.pt', weights_only=True)['cases']
    assert [spec.judge(case, out) for case, out in zip(cases, outputs)] == [None] * len(cases)


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
