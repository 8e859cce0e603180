"""Honest habits that pass on a notebook's own float32 batch but not on the grader's batches:
the visible check (run as the student runs it, on the release) flags each with its cause,
and its verdict is the grade (the grader's real entry point, `python -m grading`)."""
import csv
import os
import subprocess
import sys

import nbformat
import pytest

from tests.kit import ROOT, execute, mutated, printed, solved


def graded_by_the_grader(folder, name, students, steps=None):
    """{student: {grade id: points}} from one run of `python -m grading` (as `make grade`)
    on `students` ({student: notebook `name`}), and the problem rows."""
    for student, nb in students.items():
        (folder / 'class' / student).mkdir(parents=True)
        nbformat.write(nb, folder / 'class' / student / f'{name}.ipynb')
    env = dict(os.environ, **({'BPN_STEPS': str(steps)} if steps else {}))
    run = subprocess.run([sys.executable, '-m', 'grading', str(folder / 'class'), '--out', str(folder / 'out'),
                          '--jobs', '2', '--notebooks', name], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(folder / 'out' / 'grades.csv') as f:
        rows = [r for r in csv.DictReader(f) if r['student'] in students]
    with open(folder / 'out' / 'problems.csv') as f:
        problems = list(csv.DictReader(f))
    return {r['student']: {k.split('/')[1]: float(v) for k, v in r.items() if k.startswith(name + '/')}
            for r in rows}, problems

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
}


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    """{student: (what the graded cell showed when run visibly, points scored, points possible)}."""
    notebooks = {s: mutated(nb, edit) if edit else solved(nb) for s, (nb, _, edit, _) in HABITS.items()}
    out = {}
    for name in sorted({nb for nb, *_ in HABITS.values()}):
        mine = {s: notebooks[s] for s, (nb, *_) in HABITS.items() if nb == name}
        scores, _ = graded_by_the_grader(tmp_path_factory.mktemp('course'), name, mine)
        for student, nb in mine.items():
            gid = HABITS[student][1]
            ran = execute(nb, tmp_path_factory.mktemp('run'), allow_errors=True)
            failed = any(o.get('output_type') == 'error' for c in ran.cells for o in c.get('outputs', [])
                         if c.get('metadata', {}).get('nbgrader', {}).get('grade_id') == gid)
            out[student] = (printed(ran, gid), failed, scores[student][gid])
    return out


@pytest.mark.parametrize('student', HABITS)
def test_the_visible_check_names_the_cause_and_predicts_the_grade(results, student):
    shown, failed, score = results[student]
    cause = HABITS[student][3]
    if cause is None:
        assert not failed and score > 0, shown
    else:
        assert failed, f'{student}: the visible check passed:\n{shown}'
        assert cause in shown, f'{student}: the visible message does not say {cause!r}:\n{shown}'
        assert score == 0, f'{student}: flagged visibly but graded {score}'


def test_a_step_that_ignores_its_learning_rate_is_flagged_visibly_and_loses_its_points(tmp_path, monkeypatch):
    name = '04_manual_training'
    monkeypatch.setenv('BPN_STEPS', '1000')  # the kernels run here inherit it: seconds of training
    nb = mutated(name, ('train_step', 'p.add_(grad, alpha=-lr)', 'p.add_(grad, alpha=-0.1)'))
    scores, _ = graded_by_the_grader(tmp_path, name, {'ignores_lr': nb}, steps=1000)
    ran = execute(nb, tmp_path, allow_errors=True)
    shown = printed(ran, 'test_no_grad_step')
    assert 'use the lr argument' in shown, shown
    assert scores['ignores_lr']['test_no_grad_step'] == 0
    assert scores['ignores_lr']['test_backward'] == 4, 'the gradients themselves are right'
