"""Notebook 4: the solution trains on its own gradients; nbgrader (by hand, in the kernel) and
the grader (`python -m grading`, its judge training a fresh network with the student's
train_step) give the backward pass, the first steps, the step without autograd and the
trained loss their points only when earned; `make bench` names every figure it measures."""
import re
import subprocess
import sys

import nbformat
import pytest

from checks.core import GradingError
from tests.kit import (ROOT, SOLUTIONS, blank, execute, grade_class, graded_by_the_grader, lost, mutated, outputs_text,
                       printed, replaced, solved)

NB = '04_manual_training'
STEPS = '1000'  # BPN_STEPS for every run here: the notebook then executes in seconds
POINTS = {'test_backward': 4, 'test_first_steps': 2, 'test_no_grad_step': 2, 'test_trained': 2}

# a student who never subtracts the one-hot: dlogits is the softmax over n
FORGETS_ONE_HOT = ('dlogits = (probs - F.one_hot(Yb, probs.shape[1])) / n', 'dlogits = probs / n')

# a student who keeps PyTorch doing the work inside the step
AUTOGRAD_STEP = '''def train_step(parameters, Xb, Yb, lr):
    with torch.enable_grad():
        loss, saved = forward(parameters, Xb, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
    for p in parameters:
        p -= lr * p.grad
    return loss
'''


@pytest.fixture(scope='module')
def scores(tmp_path_factory):
    students = {
        'solver': solved(NB),
        'blank': blank(NB),
        'forgets_one_hot': mutated(NB, ('backward', *FORGETS_ONE_HOT)),
        'calls_backward': replaced(NB, 'train_step', AUTOGRAD_STEP),
    }
    return grade_class(tmp_path_factory.mktemp('course'), NB, students, {'BPN_STEPS': STEPS}).scores()


def test_solution_trains_and_its_gradients_match_pytorch_at_every_first_step(tmp_path, monkeypatch):
    monkeypatch.setenv('BPN_STEPS', STEPS)
    nb = execute(nbformat.read(SOLUTIONS / f'{NB}.ipynb', as_version=4), tmp_path)
    text = outputs_text(nb)
    lines = [ln for ln in text.splitlines() if '| approximate:' in ln]
    assert len(lines) == 7
    assert all('approximate: True' in ln and 'shape ok' in ln for ln in lines), '\n'.join(lines)
    assert '100 of 100 steps: all seven gradients matched' in text
    assert f'training for {STEPS} steps' in text and f'{STEPS} steps in' in text
    assert f'after {STEPS} steps: train' in text
    assert any('image/png' in o.get('data', {}) for c in nb.cells for o in c.get('outputs', [])), 'no loss curve'
    samples = printed(nb, 'sample').split()  # every stream output of the cell, however the kernel chunked it
    assert len(samples) == 20 and all(re.fullmatch('[a-z]+', s) for s in samples)


def test_solution_gets_full_marks(scores):
    assert scores['solver'] == POINTS


def test_blank_release_scores_zero_without_crashing_the_grader(scores):
    assert scores['blank'] == {k: 0 for k in POINTS}


def test_broken_backward_fails_the_gradient_checks_and_the_loss_bar(scores):
    # the step check compares whole updates, so it fails too: only autograd-free code passes
    assert lost(scores, 'forgets_one_hot', POINTS) == set(POINTS)


def test_step_that_calls_loss_backward_fails_only_the_no_grad_check(scores):
    assert lost(scores, 'calls_backward', POINTS) == {'test_no_grad_step'}


@pytest.fixture(scope='module')
def judged(tmp_path_factory):
    students = {'solver': solved(NB), 'blank': blank(NB), 'calls_backward': replaced(NB, 'train_step', AUTOGRAD_STEP)}
    scores, problems = graded_by_the_grader(tmp_path_factory.mktemp('graded'), {s: {NB: nb} for s, nb in students.items()},
                                            steps=STEPS)
    return {s: scores[s][NB] for s in students}, problems


def test_the_grader_trains_with_the_students_step_and_gives_the_solution_full_marks(judged):
    scores, problems = judged
    assert scores['solver'] == POINTS
    assert scores['blank'] == {k: 0 for k in POINTS}
    assert not [p for p in problems if p['student'] == 'solver']


def test_a_step_that_trains_with_autograd_is_held_by_the_grader_and_scores_nothing(judged):
    scores, problems = judged
    assert scores['calls_backward'] == {k: 0 for k in POINTS}
    assert any(p['student'] == 'calls_backward' and 'backward' in p['problem'] for p in problems)


def test_loss_bar_tightens_with_more_steps_and_holds_between_measured_counts():
    from checks.training import MEASURED, loss_bar
    counts = sorted(MEASURED)
    bars = [loss_bar(s) for s in counts]
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(bars, bars[1:]))
    assert loss_bar(counts[1] - 1) == loss_bar(counts[0])
    assert loss_bar(10 * counts[-1]) == loss_bar(counts[-1])


def test_too_few_or_garbled_steps_get_a_clear_message(monkeypatch):
    from checks.training import MEASURED, steps_from_env
    monkeypatch.setenv('BPN_STEPS', '10')
    with pytest.raises(GradingError, match=f'measured from {min(MEASURED)} steps on'):
        steps_from_env()
    monkeypatch.setenv('BPN_STEPS', 'lots')
    with pytest.raises(GradingError, match='not a whole number'):
        steps_from_env()
    monkeypatch.delenv('BPN_STEPS')
    assert steps_from_env() == 200_000


def test_bench_reports_each_step_and_both_ratios():
    run = subprocess.run([sys.executable, 'tools/bench.py', '--steps', '3', '--rounds', '1'], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    for name in ['autograd', 'lecture loop', 'solution']:
        assert any(re.match(rf'{name} +\d+ us per step', ln) for ln in lines), f'no figure for {name}'
    assert re.fullmatch(r'speedup vs autograd: \d+\.\d\dx', lines[-2])
    assert re.fullmatch(r'speedup vs lecture loop: \d+\.\d\dx', lines[-1])
