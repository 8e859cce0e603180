"""A student's answers live in work/backprop_ninja/, their own copy that `make lab` makes
once: neither a new release (`make release`) nor updating the kit (`git pull`) touches it."""
import importlib.util
import os
import shutil
import subprocess

import nbformat

from tests.kit import BIN, ROOT, edit

GIT = dict(os.environ, GIT_AUTHOR_NAME='kit', GIT_AUTHOR_EMAIL='kit@example.org',
           GIT_COMMITTER_NAME='kit', GIT_COMMITTER_EMAIL='kit@example.org')


def git(*args, cwd):
    return subprocess.run(['git', *args], cwd=cwd, env=GIT, check=True, capture_output=True, text=True).stdout


def lab_setup(kit):
    """What `make lab` does before JupyterLab starts: tools/lab.py's copy, run in `kit`."""
    spec = importlib.util.spec_from_file_location('lab', kit / 'tools' / 'lab.py')
    lab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lab)
    assert lab.ROOT == kit
    return lab.copy_release()


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_make_release_and_git_pull_leave_the_students_work_alone(tmp_path):
    upstream, student = tmp_path / 'upstream', tmp_path / 'student'
    shutil.copytree(ROOT, upstream, ignore=shutil.ignore_patterns(
        '.git', '.venv', 'grades', 'work', '__pycache__', '*.egg-info', '.pytest_cache', 'build'))
    git('init', '-q', '-b', 'main', cwd=upstream)
    git('add', '-A', cwd=upstream)
    git('commit', '-q', '-m', 'the kit', cwd=upstream)
    git('clone', '-q', str(upstream), str(student), cwd=tmp_path)
    (student / '.venv').symlink_to(ROOT / '.venv')  # the kit's environment, not a new one

    # first `make lab`: the release is copied into work/, and the student answers stage 1
    assert lab_setup(student) == ['01_atomic_backprop.ipynb', '02_fused_cross_entropy.ipynb',
                                  '03_fused_batchnorm.ipynb', '04_manual_training.ipynb']
    work = student / 'work' / 'backprop_ninja'
    mine = work / '01_atomic_backprop.ipynb'
    nb = nbformat.read(mine, as_version=4)
    edit(nb, 'stage1', '# YOUR CODE HERE', 'dlogprobs = torch.zeros_like(logprobs)  # my answer')
    nbformat.write(nb, mine)
    before = snapshot(work)
    assert git('status', '--porcelain', '--', 'work', cwd=student) == '', 'git ignores work/'

    # the kit moves on: notebook 1's text changes and a fifth notebook is released
    theirs = upstream / 'notebooks' / 'backprop_ninja' / '01_atomic_backprop.ipynb'
    nb = nbformat.read(theirs, as_version=4)
    nb.cells[0].source += '\n\nA sentence added in a later release.'
    nbformat.write(nb, theirs)
    shutil.copy(upstream / 'notebooks' / 'backprop_ninja' / '02_fused_cross_entropy.ipynb',
                upstream / 'notebooks' / 'backprop_ninja' / '05_more.ipynb')
    git('commit', '-q', '-am', 'notebook 1: one more sentence', cwd=upstream)
    git('add', '-A', cwd=upstream)
    git('commit', '-q', '-m', 'notebook 5', cwd=upstream)

    git('pull', '-q', '--ff-only', cwd=student)
    assert 'A sentence added' in (student / 'notebooks' / 'backprop_ninja' / '01_atomic_backprop.ipynb').read_text()
    assert snapshot(work) == before

    # the next `make lab` brings in only what the student lacks
    assert lab_setup(student) == ['05_more.ipynb']
    assert {k: v for k, v in snapshot(work).items() if k.name != '05_more.ipynb'} == before
    assert 'my answer' in mine.read_text() and 'A sentence added' not in mine.read_text()

    # an instructor's `make release` in the same folder rebuilds notebooks/ and nothing else
    before = snapshot(work)
    env = dict(os.environ, PATH=f'{BIN}{os.pathsep}{os.environ["PATH"]}')
    run = subprocess.run(['make', '-o', '.venv/.installed', 'release'], cwd=student, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (student / 'notebooks' / 'backprop_ninja' / '01_atomic_backprop.ipynb').exists()
    assert snapshot(work) == before
