"""Notebook 3: the derivation runs and checks itself; nbgrader gives each step its points
only when that step is right for every batch size, and names the classic mistakes."""
import re

import nbformat
import pytest

from tests.kit import SOLUTIONS, blank, cell, execute, grade_class, lost, mutated, outputs_text, printed, solved

NB = '03_fused_batchnorm'
POINTS = {'test_step1': 1, 'test_step2': 2, 'test_step3': 2, 'test_step4': 2, 'test_step5': 3}
SIGMA_TERM = '\n                                        - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0, keepdim=True))'


STUDENTS = {
    'solver': lambda: solved(NB),
    'blank': lambda: blank(NB),
    # equal in exact arithmetic: a different power, the vanishing term kept, means for sums
    'rewriter': lambda: mutated(
        NB,
        ('step2', '(bnvar + 1e-5)**-1.5', '((bnvar + 1e-5)**-0.5)**3'),
        ('step3', "dbnmeani = (-(bnvar + 1e-5)**-0.5 * dbnraw).sum(0, keepdim=True)",
         "dbnmeani = (-(bnvar + 1e-5)**-0.5 * dbnraw).sum(0, keepdim=True) "
         "- 2 / (bndiff.shape[0] - 1) * bndiff.sum(0, keepdim=True) * dbnvar"),
        ('step5', 'dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0, keepdim=True)' + SIGMA_TERM,
         'dhprebn = bngain * bnvar_inv * (dhpreact - dhpreact.mean(0, keepdim=True) '
         '- bnraw * (dhpreact * bnraw).sum(0, keepdim=True) / (n - 1))')),
    'no_fan_out_sum': lambda: mutated(NB, ('step2', '* dbnraw).sum(0, keepdim=True)', '* dbnraw)')),
    'no_bessel': lambda: mutated(NB, ('step4', '* 2 * bndiff / (n - 1)', '* 2 * bndiff / n')),
    'no_sigma_path': lambda: mutated(NB, ('step5', SIGMA_TERM, ')')),
    'global_n': lambda: mutated(NB, ('step5', '    n = bnraw.shape[0]\n', '')),
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

def test_solution_runs_and_every_step_matches_pytorch(executed):
    lines = [ln for ln in outputs_text(executed).splitlines() if '| approximate:' in ln]
    assert len(lines) == 6, lines  # five steps in float32, the one line again in float64
    assert all('approximate: True' in ln and 'shape ok' in ln for ln in lines), '\n'.join(lines)
    assert outputs_text(executed).count('matches PyTorch on this batch') == 5


def test_one_line_forward_matches_the_chunked_batchnorm(executed):
    maxdiff = float(re.search(r'maxdiff (\S+)', printed(executed, 'forward_check')).group(1))
    assert maxdiff < 1e-5


def test_deviations_from_the_batch_mean_sum_to_zero(executed):
    text = printed(executed, 'vanishing')
    total, scale = (float(x) for x in re.findall(r':\s+(\S+)\n', text))
    assert total < 1e-6 * scale


def test_float64_shrinks_the_one_lines_difference_to_double_rounding(executed):
    text = printed(executed, 'float64')
    assert float(re.search(r'maxdiff: (\S+)', text).group(1)) < 1e-15


def test_finite_differences_agree_with_both_derivations(executed):
    lines = printed(executed, 'finite_differences').splitlines()
    assert len(lines) == 2 and all(ln.endswith('agree: True') for ln in lines), lines


def test_pytorch_batchnorm_train_and_test_differ_by_bessels_factor(executed):
    ratio, expected = re.findall(r':\s+(\d\.\d{4})', printed(executed, 'bessel'))
    assert ratio == expected == '1.0160'


def test_compute_graph_is_drawn(executed):
    outputs = cell(executed, 'graph').outputs
    assert [o.output_type for o in outputs] == ['display_data'] and 'image/png' in outputs[0].data


# ---------------------------------------------------------------- grading

def test_solution_gets_full_marks(scores):
    assert scores['solver'] == POINTS


def test_answers_that_are_equal_in_exact_arithmetic_get_full_marks(scores):
    assert scores['rewriter'] == POINTS


def test_blank_release_scores_zero_without_crashing_the_grader(scores):
    assert scores['blank'] == {k: 0 for k in POINTS}


def test_forgetting_the_fan_out_sum_into_sigma2_costs_step2_only(scores, course):
    assert lost(scores, 'no_fan_out_sum', POINTS) == {'test_step2'}
    graded = course.autograded('no_fan_out_sum', NB)
    hint = 'dbnvar has shape (32, 64) but should have (1, 64): sum over dim 0 with keepdim=True'
    assert 'shape WRONG' in printed(graded, 'run_step2') and hint in printed(graded, 'run_step2')
    assert hint in printed(graded, 'test_step2')


def test_n_for_n_minus_1_costs_step4_only_and_is_named(scores, course):
    assert lost(scores, 'no_bessel', POINTS) == {'test_step4'}
    graded = course.autograded('no_bessel', NB)
    assert 'approximate: False' in printed(graded, 'run_step4')
    assert 'differs from PyTorch in' in printed(graded, 'run_step4'), "cmp's general hint"
    assert "1/n where the variance has 1/(n-1)" in printed(graded, 'test_step4')
    assert "Bessel's correction" in printed(graded, 'test_step4')


def test_dropping_the_sigma2_path_costs_step5_only_and_is_named(scores, course):
    assert lost(scores, 'no_sigma_path', POINTS) == {'test_step5'}
    graded = course.autograded('no_sigma_path', NB)
    assert 'approximate: False' in printed(graded, 'run_step5')
    assert 'without the sigma^2 path' in printed(graded, 'test_step5')


def test_the_notebooks_n_in_the_one_line_passes_at_32_but_costs_step5(scores, course):
    assert lost(scores, 'global_n', POINTS) == {'test_step5'}
    graded = course.autograded('global_n', NB)
    assert 'approximate: True' in printed(graded, 'run_step5'), 'at n = 32 nothing shows'
    message = printed(graded, 'test_step5')
    assert 'n 2,' in message and 'n = 32 on this batch of 2' in message
