"""Honest habits that pass on a notebook's own float32 batch but not on the grader's batches:
the visible check (run as the student runs it, on the release) flags each with its cause,
and its verdict is the grade (the grader's real entry point, `python -m grading`)."""
import os

import pytest

from tests.kit import execute_all, graded_by_the_grader, mutated, printed, solved

STEPS = 1000  # BPN_STEPS for the kernels run here and for the grader: notebook 4 trains in seconds

ONE_HOT_MATMUL = ('dC = torch.zeros_like(C)\n    dC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))',
                  'dC = F.one_hot(Xb.view(-1), C.shape[0]).float().T @ demb.view(-1, C.shape[1])')

# student: (notebook, graded cell, the edit, what the visible message must name)
HABITS = {
    'solver': ('01_atomic_backprop', 'test_stage4', None, None),
    'float32_one_hot': ('01_atomic_backprop', 'test_stage4', ('stage4', *ONE_HOT_MATMUL), 'float32 cast'),
    'global_n': ('01_atomic_backprop', 'test_stage1', ('stage1', '    n = logprobs.shape[0]\n', ''),
                 "global n = 32"),
    'global_bndiff2': ('01_atomic_backprop', 'test_stage3',
                       ('stage3', 'torch.ones_like(bndiff) / (n - 1)', 'torch.ones_like(bndiff2) / (n - 1)'),
                       'global bndiff2'),
    'zeros_27_10': ('01_atomic_backprop', 'test_stage4', ('stage4', 'torch.zeros_like(C)', 'torch.zeros(27, 10)'),
                    'a size typed into the function'),
    'view_10': ('01_atomic_backprop', 'test_stage4', ('stage4', 'demb.view(-1, C.shape[1])', 'demb.view(-1, 10)'),
                'a size typed into the function'),
    'aliased': ('01_atomic_backprop', 'test_stage3', ('stage3', 'dhprebn = dbndiff.clone()', 'dhprebn = dbndiff'),
                '.clone()'),
    'one_hot_27': ('02_fused_cross_entropy', 'test_dlogits',
                   ('dlogits', '    dlogits[range(n), Yb] -= 1      # the label\'s entry: p_y - 1\n',
                    '    dlogits = dlogits - F.one_hot(Yb, 27)\n'), 'a size typed into the function'),
    'ignores_lr': ('04_manual_training', 'test_no_grad_step',
                   ('train_step', 'p.add_(grad, alpha=-lr)', 'p.add_(grad, alpha=-0.1)'), 'use the lr argument'),
}


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    """{student: (what the graded cell showed when run visibly, whether it failed, the points of
    each graded cell of that notebook)}: every habit graded in one run of the grader, and each
    run in a kernel of its own, a few at a time."""
    notebooks = {s: mutated(nb, edit) if edit else solved(nb) for s, (nb, _, edit, _) in HABITS.items()}
    scores, _ = graded_by_the_grader(tmp_path_factory.mktemp('course'),
                                     {s: {HABITS[s][0]: nb} for s, nb in notebooks.items()}, steps=STEPS)
    ran = execute_all([(nb, tmp_path_factory.mktemp('run')) for nb in notebooks.values()], allow_errors=True,
                      env=dict(os.environ, BPN_STEPS=str(STEPS)))
    out = {}
    for (student, (name, gid, _, _)), nb in zip(HABITS.items(), ran):
        failed = any(o.get('output_type') == 'error' for c in nb.cells for o in c.get('outputs', [])
                     if c.get('metadata', {}).get('nbgrader', {}).get('grade_id') == gid)
        out[student] = (printed(nb, gid), failed, scores[student][name])
    return out


@pytest.mark.parametrize('student', HABITS)
def test_the_visible_check_names_the_cause_and_predicts_the_grade(results, student):
    shown, failed, scores = results[student]
    cause, score = HABITS[student][3], scores[HABITS[student][1]]
    if cause is None:
        assert not failed and score > 0, shown
    else:
        assert failed, f'{student}: the visible check passed:\n{shown}'
        assert cause in shown, f'{student}: the visible message does not say {cause!r}:\n{shown}'
        assert score == 0, f'{student}: flagged visibly but graded {score}'


def test_a_step_that_ignores_its_learning_rate_is_flagged_visibly_and_loses_its_points(results):
    shown, failed, scores = results['ignores_lr']  # (its visible message and its 0 are checked above too)
    assert failed and 'use the lr argument' in shown, shown
    assert scores['test_no_grad_step'] == 0
    assert scores['test_backward'] == 4, 'the gradients themselves are right'
