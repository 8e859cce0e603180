"""`make student-kit`: the student's share of the kit holds what a student's Python needs for
the released notebooks and no answer in any form, and the notebooks run from it alone, in a
fresh virtual environment that has never seen the kit."""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import nbformat
import pytest

from tests.kit import RELEASE, ROOT, SOLUTIONS, new_venv, solved

NOTEBOOKS = sorted(p.stem for p in RELEASE.glob('*.ipynb'))
# Lines of answer cells that the share may hold, and why each is no answer:
GIVEN = {
    'n = bnraw.shape[0]': "notebook 1's release gives it in stage 3's function, above the answer",
    'dlogits = dnorm_logits.clone()': "notebook 1's text gives it as the way to start dlogits in stage 1",
    'p.add_(grad, alpha=-lr)': "notebook 4's text gives the in-place update to use in train_step",
}


def answer_lines():
    """Every line of every answer cell of solutions/ (between ### BEGIN SOLUTION and
    ### END SOLUTION), without blank lines and comments (the notebooks' own words, which the
    share's checks may use too), a trailing comment cut off."""
    lines = set()
    for path in sorted(SOLUTIONS.glob('*.ipynb')):
        for c in nbformat.read(path, as_version=4).cells:
            for block in re.findall(r'### BEGIN SOLUTION\n(.*?)### END SOLUTION', c.source, re.S):
                for line in block.splitlines():
                    code = line.split('  #')[0].strip()
                    if code and not code.startswith('#'):
                        lines.add(code)
    return lines


def squeezed(text):
    return re.sub(r'\s', '', text)


@pytest.fixture(scope='module')
def share(tmp_path_factory):
    """What `make student-kit` builds, into a folder of the test's own."""
    out = tmp_path_factory.mktemp('student_kit')
    subprocess.run([sys.executable, ROOT / 'tools' / 'student_kit.py', '--out', out], check=True,
                   capture_output=True)
    return out


def test_make_student_kit_runs_the_tool_that_builds_the_share_into_build():
    env = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MAKELEVEL', 'MFLAGS')}
    done = subprocess.run(['make', '--no-print-directory', '-n', '-o', '.venv/.installed', 'student-kit'], cwd=ROOT,
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ROOT / '.venv' / 'bin' / 'python'), 'tools/student_kit.py', '--out', 'build']
    assert '/build/' in (ROOT / '.gitignore').read_text().split()


def share_text(folder):
    """Every file of the share as text; a notebook also as its cells' sources, unescaped."""
    texts = {}
    for path in sorted(p for p in folder.rglob('*') if p.is_file()):
        text = path.read_bytes().decode(errors='replace')
        if path.suffix == '.ipynb':
            text += '\n'.join(c['source'] if isinstance(c['source'], str) else ''.join(c['source'])
                              for c in json.loads(text)['cells'])
        texts[path.relative_to(folder).as_posix()] = squeezed(text)
    return texts


def test_the_share_holds_helpers_the_checks_the_names_and_the_released_notebooks_only(share):
    files = {p.relative_to(share / 'student-kit').as_posix() for p in (share / 'student-kit').rglob('*') if p.is_file()}
    helpers = {f for f in files if f == 'helpers.py' or f.startswith('helpers/')}
    checks = {f for f in files if f.startswith('checks/')}
    notebooks = {f'notebooks/backprop_ninja/{name}.ipynb' for name in NOTEBOOKS}
    assert helpers and 'checks/core.py' in checks and 'checks/handin.py' in checks
    assert files == helpers | checks | notebooks | {'data/names.txt', 'pyproject.toml'}
    assert not any('solution' in f or 'nbsrc' in f for f in files)


def test_no_line_of_any_answer_cell_is_anywhere_in_the_share_or_its_wheel(share):
    lines = answer_lines()
    assert len(lines) > 50, 'the solutions hold fewer answer lines than they did: check answer_lines()'
    wheel = next(share.glob('backprop_ninja_student-*.whl'))
    shutil.unpack_archive(wheel, share / 'wheel', format='zip')
    found = [(line, name) for name, text in (share_text(share / 'student-kit') | share_text(share / 'wheel')).items()
             for line in lines - set(GIVEN) if squeezed(line) in text]
    assert not found, '\n'.join(f'{name}: {line}' for line, name in found)


def test_the_share_pins_what_the_kit_pins(share):
    kit = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    pins = set(kit['dependencies']) | set(sum(kit['optional-dependencies'].values(), []))
    project = tomllib.loads((share / 'student-kit' / 'pyproject.toml').read_text())['project']
    assert 'torch==2.13.0' in project['dependencies']
    assert set(project['dependencies']) | set(sum(project['optional-dependencies'].values(), [])) <= pins


# ---------------------------------------------------------------- the notebooks, from the share alone

RUN = '''
import asyncio, sys
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
async def run(path, gate):
    nb = nbformat.read(path, as_version=4)
    async with gate:
        try:
            await NotebookClient(nb, timeout=900, kernel_name='python3',
                                 resources={'metadata': {'path': str(Path(path).parent)}}).async_execute()
        except CellExecutionError:
            pass  # the notebook keeps its outputs up to the cell that raised
    nbformat.write(nb, path)
async def main():
    gate = asyncio.Semaphore(3)  # kernels at a time
    await asyncio.gather(*(run(path, gate) for path in sys.argv[1:]))
asyncio.run(main())
'''
WHERE = 'import sys, helpers, checks\nprint("from:", sys.prefix, helpers.__file__, checks.__file__)'


@pytest.fixture(scope='module')
def fresh_venv(share, tmp_path_factory):
    """A virtual environment of its own (no system site-packages) with the share's wheel
    and nbclient installed by pip, at the kit's pinned versions."""
    venv = new_venv(tmp_path_factory.mktemp('fresh') / 'venv')
    pins = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['dependencies']
    tools = [p for p in pins if p.startswith(('nbclient==', 'nbformat=='))]
    subprocess.run([venv / 'bin' / 'python', '-m', 'pip', 'install', '-q', '--no-compile', '--disable-pip-version-check',
                    next(share.glob('backprop_ninja_student-*.whl')), *tools], check=True, capture_output=True)
    return venv


@pytest.fixture(scope='module')
def ran(fresh_venv, tmp_path_factory):
    """Each released notebook, blank and with the solution's answers filled in, run in that
    environment from a folder that holds nothing of the kit; a first cell says where
    helpers and checks came from."""
    work = tmp_path_factory.mktemp('student')
    paths = []
    for name in NOTEBOOKS:
        for kind, nb in (('blank', nbformat.read(RELEASE / f'{name}.ipynb', as_version=4)), ('solved', solved(name))):
            nb.cells.insert(0, nbformat.v4.new_code_cell(WHERE))
            (work / kind).mkdir(exist_ok=True)
            nbformat.write(nb, work / kind / f'{name}.ipynb')
            paths.append(work / kind / f'{name}.ipynb')
    env = dict(PATH=f'{fresh_venv / "bin"}:/usr/bin:/bin', HOME=str(work), BPN_STEPS='500', MPLBACKEND='Agg',
               LANG=os.environ.get('LANG', 'C.UTF-8'))
    subprocess.run([fresh_venv / 'bin' / 'python', '-c', RUN, *paths], cwd=work, env=env, check=True, timeout=3000)
    return {(p.parent.name, p.stem): nbformat.read(p, as_version=4) for p in paths}


def errors(nb):
    return [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == 'code'
            for o in c.get('outputs', []) if o.output_type == 'error']


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_a_released_notebook_runs_from_the_share_to_its_first_unanswered_cell(ran, fresh_venv, name):
    """Every cell runs up to the first visible check, which says the answer above it is not
    written yet: the checks work from the share, and nothing in the notebook needs the kit."""
    nb = ran['blank', name]
    where = ''.join(o.get('text', '') for o in nb.cells[0].outputs)
    assert f'from: {fresh_venv}' in where and str(ROOT) not in where, where
    found = errors(nb)
    assert len(found) == 1, found
    index, error = found[0]
    assert error['ename'] == 'GradingError' and 'not written yet' in error['evalue'], error
    answers = [i for i, c in enumerate(nb.cells) if c.metadata.get('nbgrader', {}).get('solution')]
    tests = [i for i, c in enumerate(nb.cells) if c.metadata.get('nbgrader', {}).get('grade')]
    assert index == min(i for i in tests if i > answers[0]), 'it did not stop at the first answer\'s check'
    assert all(c.get('execution_count') for c in nb.cells[:index] if c.cell_type == 'code'), 'a cell before it did not run'


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_every_visible_check_of_a_solved_notebook_passes_from_the_share(ran, name):
    nb = ran['solved', name]
    assert not errors(nb), errors(nb)
    tests = [c for c in nb.cells if c.metadata.get('nbgrader', {}).get('grade')]
    assert tests and all(c.get('execution_count') for c in tests)
    shown = ''.join(o.get('text', '') for c in tests for o in c.outputs)
    assert shown.count(': right') >= sum('expect_fresh' in c.source for c in tests), shown


def test_a_students_kernel_cannot_import_the_grader_or_the_solutions(fresh_venv, tmp_path):
    probe = 'import importlib.util as u; print([m for m in ("grading", "tools", "solutions", "nbsrc") if u.find_spec(m)])'
    done = subprocess.run([fresh_venv / 'bin' / 'python', '-c', probe], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(PATH='/usr/bin:/bin', HOME=str(tmp_path)), check=True)
    assert done.stdout.strip() == '[]'
