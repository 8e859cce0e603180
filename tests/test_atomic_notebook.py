"""Notebook 1: the solution runs and agrees with PyTorch; nbgrader gives each stage
its points only for honest, general code."""
import nbformat
import pytest

from tests.kit import SOLUTIONS, blank, execute, grade_class, lost, mutated, outputs_text, replaced, solved

NB = '01_atomic_backprop'
POINTS = {'test_stage1': 3, 'test_stage2': 2, 'test_stage3': 3, 'test_stage4': 2}

AUTOGRAD_STAGE4 = '''def backprop_layer1(dhprebn, embcat, W1, emb, Xb, C):
    with torch.enable_grad():
        C, W1 = C.detach().requires_grad_(), W1.detach().requires_grad_()
        b1 = torch.zeros(W1.shape[1], requires_grad=True)
        hprebn = C[Xb].view(Xb.shape[0], -1) @ W1 + b1
        dC, dW1, db1 = torch.autograd.grad(hprebn, [C, W1, b1], dhprebn)
    dembcat = dhprebn @ W1.T
    return dembcat, dW1, db1, dembcat.view(emb.shape), dC
'''


def rewritten():
    """Correct answers written differently: a Python loop for dC, bnvar_inv cubed."""
    return mutated(NB, ('stage4', 'dC.index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))',
                        'for i in range(Xb.shape[0]):\n        for j in range(Xb.shape[1]):\n'
                        '            dC[Xb[i, j]] += demb[i, j]'),
                   ('stage3', '-0.5 * (bnvar + 1e-5)**-1.5 * dbnvar_inv', '-0.5 * bnvar_inv**3 * dbnvar_inv'))


@pytest.fixture(scope='module')
def scores(tmp_path_factory):
    students = {
        'solver': solved(NB),
        'blank': blank(NB),
        'rewriter': rewritten(),
        'no_bessel': mutated(NB, ('stage3', '/ (n - 1)', '/ n')),
        'copies_grad': mutated(NB, ('stage2', 'dhpreact = (1.0 - h**2) * dh', 'dhpreact = hpreact.grad')),
        'hardcodes_n': mutated(NB, ('stage1', 'n = logprobs.shape[0]', 'n = 32')),
        'uses_autograd': replaced(NB, 'stage4', AUTOGRAD_STAGE4),
        'no_fan_out_sum': mutated(NB, ('stage1', '    dcounts += dcounts_sum\n', '')),
    }
    return grade_class(tmp_path_factory.mktemp('course'), NB, students).scores()


def test_solution_runs_and_every_gradient_matches_pytorch(tmp_path):
    nb = execute(nbformat.read(SOLUTIONS / f'{NB}.ipynb', as_version=4), tmp_path)
    lines = [ln for ln in outputs_text(nb).splitlines() if '| approximate:' in ln]
    assert len(lines) == 26
    assert all('approximate: True' in ln and 'shape ok' in ln for ln in lines), '\n'.join(lines)
    exact = sum('exact: True' in ln for ln in lines)
    assert exact >= 25, f'only {exact} of 26 bit-exact'


def test_solution_gets_full_marks(scores):
    assert scores['solver'] == POINTS


def test_answers_that_are_equal_in_exact_arithmetic_get_full_marks(scores):
    assert scores['rewriter'] == POINTS


def test_blank_release_scores_zero_without_crashing_the_grader(scores):
    assert scores['blank'] == {k: 0 for k in POINTS}


def test_missing_bessel_correction_costs_only_the_batchnorm_stage(scores):
    assert lost(scores, 'no_bessel', POINTS) == {'test_stage3'}
    assert sum(scores['no_bessel'].values()) == 7


def test_copying_pytorchs_grad_scores_zero_for_that_stage(scores):
    assert lost(scores, 'copies_grad', POINTS) == {'test_stage2'}


def test_hard_coding_the_batch_size_scores_zero_for_that_stage(scores):
    assert lost(scores, 'hardcodes_n', POINTS) == {'test_stage1'}


def test_calling_autograd_scores_zero_for_that_stage(scores):
    assert lost(scores, 'uses_autograd', POINTS) == {'test_stage4'}


def test_forgetting_a_fan_out_sum_fails_its_stage(scores):
    assert lost(scores, 'no_fan_out_sum', POINTS) == {'test_stage1'}


def test_validate_on_the_unsolved_release_says_not_written_yet(tmp_path):
    import os
    import shutil
    import subprocess
    from tests.kit import BIN, RELEASE
    shutil.copy(RELEASE / f'{NB}.ipynb', tmp_path)
    env = dict(os.environ, PATH=f'{BIN}{os.pathsep}{os.environ["PATH"]}')
    run = subprocess.run([str(BIN / 'nbgrader'), 'validate', f'{NB}.ipynb'], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    shown = run.stdout + run.stderr
    assert shown.count('not written yet') >= 4, shown
    assert 'never assigned' not in shown
