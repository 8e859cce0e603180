"""Notebook 2: the solution runs and explains itself; nbgrader gives dlogits and each
question its points only for general, overflow-safe code and right answers."""
import re

import nbformat
import pytest

from tests.kit import SOLUTIONS, blank, cell, execute, grade_class, lost, mutated, outputs_text, printed, solved

NB = '02_fused_cross_entropy'
POINTS = {'test_dlogits': 3, 'test_row_sum': 1, 'test_negative_column': 1, 'test_pull': 1}


NAIVE_SOFTMAX = 'dlogits = F.softmax(logits, 1)'
STUDENTS = {
    'solver': lambda: solved(NB),
    'blank': lambda: blank(NB),
    # the same math, written another way
    'rewriter': lambda: mutated(NB, ('dlogits', NAIVE_SOFTMAX + '  #',
                               'dlogits = (logits - logits.max(1, keepdim=True).values).exp()\n'
                               '    dlogits /= dlogits.sum(1, keepdim=True)  #')),
    'naive_softmax': lambda: mutated(NB, ('dlogits', NAIVE_SOFTMAX,
                                    'dlogits = logits.exp() / logits.exp().sum(1, keepdim=True)')),
    'forgets_the_mean': lambda: mutated(NB, ('dlogits', '    dlogits /= n\n', '')),
    'searches_for_the_max': lambda: mutated(NB, ('negative_column', 'column = Yb.clone()',
                                           'column = probs.argmax(1)')),
}


@pytest.fixture(scope='module')
def course(tmp_path_factory):
    students = {student: make() for student, make in STUDENTS.items()}
    return grade_class(tmp_path_factory.mktemp('course'), NB, students)


@pytest.fixture(scope='module')
def scores(course):
    return course.scores()


@pytest.fixture(scope='module')
def executed(tmp_path_factory):
    nb = nbformat.read(SOLUTIONS / f'{NB}.ipynb', as_version=4)
    return execute(nb, tmp_path_factory.mktemp('run'))


# ---------------------------------------------------------------- the solution, as a reader sees it

def test_solution_runs_and_dlogits_is_approximately_pytorchs(executed):
    lines = [ln for ln in outputs_text(executed).splitlines() if '| approximate:' in ln]
    assert len(lines) == 2, lines  # float32, then float64
    assert all('approximate: True' in ln and 'shape ok' in ln for ln in lines), '\n'.join(lines)


def test_chunked_loss_and_f_cross_entropy_are_one_float32_step_apart(executed):
    text = printed(executed, 'forward_check')
    diff = float(re.search(r'difference\s+(\S+)', text).group(1))
    gap = float(re.search(r'float32 numbers near \S+: (\S+)', text).group(1))
    assert 0 < diff <= gap < 1e-6


def test_float64_shrinks_the_difference_to_double_rounding(executed):
    text = printed(executed, 'float64')
    f32 = float(re.search(r'float32: maxdiff (\S+),', text).group(1))
    f64 = float(re.search(r'float64: maxdiff (\S+),', text).group(1))
    assert 1e-10 < f32 < 1e-7 and f64 < 1e-15
    steps = [float(s) for s in re.findall(r'which is (\S+) rounding steps', text)]
    assert len(steps) == 2 and all(s < 5 for s in steps), 'in units of its own precision, the error is a few roundings'
    loss64 = float(re.search(r'in float64, difference (\S+)', text).group(1))
    assert loss64 < 1e-14


def test_dlogits_is_drawn_with_a_colorbar(executed):
    source, outputs = cell(executed, 'picture').source, cell(executed, 'picture').outputs
    assert 'colorbar' in source
    assert [o.output_type for o in outputs] == ['display_data'] and 'image/png' in outputs[0].data


# ---------------------------------------------------------------- grading

def test_solution_gets_full_marks(scores):
    assert scores['solver'] == POINTS


def test_a_max_subtracted_softmax_by_hand_gets_full_marks(scores):
    assert scores['rewriter'] == POINTS


def test_blank_release_scores_zero_without_crashing_the_grader(scores):
    assert scores['blank'] == {k: 0 for k in POINTS}


def test_a_wrong_answer_to_one_question_costs_only_that_question(scores, course):
    assert lost(scores, 'searches_for_the_max', POINTS) == {'test_negative_column'}
    graded = course.autograded('searches_for_the_max', NB)
    assert 'see which entry is below zero' in printed(graded, 'test_negative_column')


def test_naive_softmax_passes_on_the_batch_but_loses_dlogits_to_large_logits(scores, course):
    assert lost(scores, 'naive_softmax', POINTS) == {'test_dlogits'}
    graded = course.autograded('naive_softmax', NB)
    assert 'approximate: True' in printed(graded, 'run_dlogits'), 'small logits: the naive softmax is fine'
    message = printed(graded, 'test_dlogits')
    assert 'logit scale 1000.0' in message and 'NaN or inf' in message and 'exp that overflowed' in message


def test_forgetting_the_batch_mean_costs_dlogits_and_cmp_names_the_factor(scores, course):
    assert lost(scores, 'forgets_the_mean', POINTS) == {'test_dlogits'}
    shown = printed(course.autograded('forgets_the_mean', NB), 'run_dlogits')
    assert 'approximate: False' in shown
    assert '32 times PyTorch' in shown and 'a missing 1/32' in shown
