"""What the tests share: running notebooks with a real kernel, and an nbgrader course in
a temporary folder where made-up students submit and the real CLI grades them."""
import asyncio
import csv
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from grading.demo import strip_markers

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / 'solutions' / 'backprop_ninja'
RELEASE = ROOT / 'notebooks' / 'backprop_ninja'
BIN = Path(sys.executable).parent
ASSIGNMENT = 'backprop_ninja'


def new_venv(path):
    """A fresh virtual environment at `path` with the pip of the kit's own (the Makefile's PIP)."""
    subprocess.run([sys.executable, '-m', 'venv', path], check=True)
    subprocess.run([Path(path) / 'bin' / 'python', '-m', 'pip', 'install', '-q', '--disable-pip-version-check',
                    f'pip=={version("pip")}'], check=True, capture_output=True)
    return Path(path)


def execute(nb, cwd, timeout=600, allow_errors=False):
    """Run a notebook top to bottom in a fresh python3 kernel; return it with outputs."""
    return execute_all([(nb, cwd)], timeout, allow_errors)[0]


def execute_all(runs, timeout=600, allow_errors=False, env=None, at_once=3):
    """execute() each (notebook, folder) of `runs`, `at_once` kernels at a time (with `env`,
    the kernels' whole environment, when given); the notebooks with outputs, in order."""
    async def all_of_them():
        gate = asyncio.Semaphore(at_once)

        async def one(nb, cwd):
            nb = nbformat.from_dict(nb)
            async with gate:
                await NotebookClient(nb, timeout=timeout, kernel_name='python3', allow_errors=allow_errors,
                                     resources={'metadata': {'path': str(cwd)}}).async_execute(
                                         **({'env': env} if env else {}))
            return nb
        return await asyncio.gather(*(one(nb, cwd) for nb, cwd in runs))
    return asyncio.run(all_of_them())


def outputs_text(nb):
    return ''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []))


def cell(nb, grade_id):
    for c in nb.cells:
        if c.metadata.get('nbgrader', {}).get('grade_id') == grade_id:
            return c
    raise KeyError(grade_id)


def solved(name):
    """The released notebook `name` with every answer cell filled in from the solution."""
    release = nbformat.read(RELEASE / f'{name}.ipynb', as_version=4)
    solution = nbformat.read(SOLUTIONS / f'{name}.ipynb', as_version=4)
    for c in release.cells:
        meta = c.metadata.get('nbgrader', {})
        if meta.get('solution'):
            c.source = strip_markers(cell(solution, meta['grade_id']).source)
    return release


def blank(name):
    return nbformat.read(RELEASE / f'{name}.ipynb', as_version=4)


def edit(nb, grade_id, old, new):
    """nb with the first `old` in cell `grade_id` replaced by `new`; `old` must be there."""
    c = cell(nb, grade_id)
    assert old in c.source, f'{grade_id} no longer holds {old!r}: update this test'
    c.source = c.source.replace(old, new, 1)
    return nb


def mutated(name, *edits):
    """The solved notebook `name` with (grade_id, old, new) replacements."""
    nb = solved(name)
    for grade_id, old, new in edits:
        edit(nb, grade_id, old, new)
    return nb


def replaced(name, grade_id, source):
    """The solved notebook `name` with one cell's source swapped for `source`."""
    nb = solved(name)
    cell(nb, grade_id).source = source
    return nb


def printed(nb, grade_id):
    """What a cell showed: its printed text and the message of any error it raised."""
    return ''.join(o.get('text', '') + o.get('evalue', '') for o in cell(nb, grade_id).get('outputs', []))


def lost(scores, student, points):
    """The grade cells where `student` scored less than the full `points`."""
    return {k for k, v in scores[student].items() if v < points[k]}


def nbgrader(*args, cwd, check=True):
    env = dict(os.environ, PATH=f'{BIN}{os.pathsep}{os.environ["PATH"]}')  # nbgrader runs alembic by PATH
    run = subprocess.run([str(BIN / 'nbgrader'), *args, '--log-level=WARN'], cwd=cwd, env=env,
                         capture_output=True, text=True)
    if check and run.returncode != 0:
        raise AssertionError(f'nbgrader {" ".join(args)} failed:\n{run.stdout}\n{run.stderr}')
    return run


def graded_by_the_grader(folder, students, steps=None):
    """One run of `python -m grading` (as `make grade`) on `students` ({student: {notebook
    name: notebook}}), grading every notebook any of them hands in (the others are missing
    for a student, which costs only those): ({student: {notebook name: {grade id: points}}},
    the problem rows)."""
    for student, notebooks in students.items():
        (folder / 'class' / student).mkdir(parents=True)
        for name, nb in notebooks.items():
            nbformat.write(nb, folder / 'class' / student / f'{name}.ipynb')
    names = sorted({name for notebooks in students.values() for name in notebooks})
    env = dict(os.environ, **({'BPN_STEPS': str(steps)} if steps else {}))
    run = subprocess.run([sys.executable, '-m', 'grading', str(folder / 'class'), '--out', str(folder / 'out'),
                          '--jobs', '2', '--notebooks', ','.join(names)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    scores = {student: {name: {} for name in names} for student in students}
    with open(folder / 'out' / 'grades.csv') as f:
        for row in csv.DictReader(f):
            for column, points in row.items():
                if row['student'] in students and '/' in column:
                    name, gid = column.split('/')
                    scores[row['student']][name][gid] = float(points)
    with open(folder / 'out' / 'problems.csv') as f:
        return scores, list(csv.DictReader(f))


def grade_class(path, name, students, env=None):
    """A Course in `path` where each of `students` ({student: notebook}) hands in notebook
    `name`, all autograded in one run."""
    course = Course(path)
    for student, nb in students.items():
        course.submit(student, {name: nb})
    course.autograde(env)
    return course


class Course:
    """A throwaway course folder: the kit's solutions as source, released with the real CLI."""

    def __init__(self, path):
        self.path = Path(path)
        self.submitted = {}  # student: names of the notebooks they handed in
        shutil.copy(ROOT / 'nbgrader_config.py', self.path)
        shutil.copytree(ROOT / 'solutions', self.path / 'solutions')
        nbgrader('generate_assignment', ASSIGNMENT, '--force', cwd=self.path)

    def submit(self, student, notebooks):
        """notebooks: {name: notebook node}"""
        folder = self.path / 'submitted' / student / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        self.submitted.setdefault(student, set()).update(notebooks)
        for name, nb in notebooks.items():
            nbformat.write(nb, folder / f'{name}.ipynb')
        (folder / 'timestamp.txt').write_text('2026-11-28 10:00:00.000000 UTC')

    def autograde(self, extra_env=None):
        env_before = dict(os.environ)
        os.environ.update(extra_env or {})
        try:
            return nbgrader('autograde', ASSIGNMENT, '--force', cwd=self.path)
        finally:
            os.environ.clear()
            os.environ.update(env_before)

    def autograded(self, student, name):
        """The notebook as nbgrader graded it, with every cell's output (cmp lines, errors)."""
        return nbformat.read(self.path / 'autograded' / student / ASSIGNMENT / f'{name}.ipynb', as_version=4)

    def scores(self):
        """{student: {grade_id: points scored}} read from the sqlite gradebook, for the
        notebooks each student submitted (nbgrader scores the others 0)."""
        from nbgrader.api import Gradebook
        out = {}
        with Gradebook(f'sqlite:///{self.path / "gradebook.db"}') as gb:
            for student in gb.students:
                sub = gb.find_submission(ASSIGNMENT, student.id)
                out[student.id] = {g.name: g.score for nb in sub.notebooks for g in nb.grades
                                   if nb.name in self.submitted.get(student.id, ())}
        return out
