"""The assignment as nbgrader sees it: its release, its gradebook and what each graded cell is
worth. Nothing here names a notebook: notebooks, cells and points come from the release and the gradebook."""
import ast
import re
import shutil
from contextlib import suppress
from pathlib import Path

import nbformat
from traitlets.config.loader import PyFileConfigLoader


ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / 'solutions'


def assignment_name():
    """The one assignment in solutions/ (the kit has one: backprop_ninja)."""
    names = sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and not p.name.startswith('.'))
    if len(names) != 1:
        raise SystemExit(f'expected one assignment folder in {SOLUTIONS}, found {names}: pass --assignment')
    return names[0]


def notebook_names(assignment):
    return sorted(p.stem for p in (SOLUTIONS / assignment).glob('*.ipynb'))


def make_template(folder, assignment, only=None):
    """generate_assignment in `folder`: the release and a gradebook with the assignment in
    it, which every student's own grading folder starts from. `only`: the names of the
    notebooks to grade, when not all of them (say, this week's)."""
    from nbgrader.apps import NbGraderAPI
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = SOLUTIONS
    if only:
        unknown = sorted(set(only) - set(notebook_names(assignment)))
        if unknown:
            raise SystemExit(f'no notebook {", ".join(unknown)} in {SOLUTIONS / assignment}; '
                             f'there are {", ".join(notebook_names(assignment))}')
        source = folder / 'source'
        (source / assignment).mkdir(parents=True)
        for name in only:
            shutil.copy(SOLUTIONS / assignment / f'{name}.ipynb', source / assignment)
    config = PyFileConfigLoader('nbgrader_config.py', path=str(ROOT)).load_config()  # the kit's, in `folder`
    config.CourseDirectory.root = str(folder)
    config.CourseDirectory.source_directory = str(source)
    config.CourseDirectory.release_directory = 'release'
    config.NbGraderAPI.log_level = 'WARN'
    result = NbGraderAPI(config=config).generate_assignment(assignment, force=True)
    if not result['success']:
        raise SystemExit(f'nbgrader generate_assignment failed:\n{result.get("error") or result.get("log")}')
    return Assignment(folder, assignment)


def grade_id(cell):
    return cell.get('metadata', {}).get('nbgrader', {}).get('grade_id')


def label(cell):
    """How a problem line names a cell: its grade id, or the start of a cell the student added."""
    if grade_id(cell):
        return grade_id(cell)
    first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), '')
    return f'added cell "{first[:28]}{"..." if len(first) > 28 else ""}"'


def stage_at(cells, index, points):
    """The graded cell (grade id) whose score cell `index` feeds: the next graded one."""
    return next((grade_id(cell) for cell in cells[index:] if grade_id(cell) in points), None)


class Notebook:
    """One released notebook: its cells by grade id, and its graded cells in order."""

    def __init__(self, name, release, source):
        self.name, self.release, self.source = name, release, source
        self.cells = {grade_id(c): c for c in release.cells if grade_id(c)}
        self.order = [grade_id(c) for c in release.cells if grade_id(c)]
        meta = {k: c.metadata.nbgrader for k, c in self.cells.items()}
        self.graded = [k for k in self.order if meta[k].get('grade')]
        self.points = {k: float(meta[k]['points']) for k in self.graded}
        self.total = sum(self.points.values())
        self.locked = {k for k in self.order if meta[k].get('locked')}
        self.solutions = [k for k in self.order if meta[k].get('solution')]
        self.labels, heading = {}, None  # each graded cell named by the last markdown heading above it, for plots
        for cell in release.cells:
            if grade_id(cell) in self.points:
                self.labels[grade_id(cell)] = heading or grade_id(cell)
            heads = re.findall(r'^#+\s*(.+)$', cell.source, flags=re.M) if cell.cell_type == 'markdown' else []
            heading = heads[-1].strip() if heads else heading
        self.kit_sources = {c.source.strip() for c in release.cells}
        self.kit_names = {}  # {name: what it is} for what the kit's own cells import (cmp, torch, F, ...)
        for cell in source.cells:
            if grade_id(cell) in self.locked and cell.cell_type == 'code':
                with suppress(SyntaxError):
                    self.kit_names.update(aliases(ast.parse(cell.source)))


def aliases(tree):
    """{name bound by an import in the syntax tree: the dotted thing it stands for}."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split('.')[0]] = a.name if a.asname else a.name.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                out[a.asname or a.name] = f'{node.module}.{a.name}'
    return out


class Assignment:
    """The template folder made by make_template: release, gradebook and source notebooks."""

    def __init__(self, folder, name):
        self.folder, self.name = Path(folder), name
        self.gradebook = self.folder / 'gradebook.db'
        self.notebooks = {}
        for path in sorted((self.folder / 'release' / name).glob('*.ipynb')):
            source = nbformat.read(SOLUTIONS / name / path.name, as_version=4)
            self.notebooks[path.stem] = Notebook(path.stem, nbformat.read(path, as_version=4), source)
        gids = [gid for nb in self.notebooks.values() for gid in nb.graded]
        for gid in gids:
            if gids.count(gid) > 1:  # the grader's checks are looked up by grade id alone
                raise SystemExit(f'grade id {gid} is in several notebooks: grade ids must be unique across the '
                                 'assignment')
        self.total = sum(nb.total for nb in self.notebooks.values())

    def stale_release(self):
        """Notebooks whose committed student version (notebooks/) differs from this release."""
        stale = []
        for name, nb in self.notebooks.items():
            committed = ROOT / 'notebooks' / self.name / f'{name}.ipynb'
            theirs = nbformat.read(committed, as_version=4).cells if committed.exists() else []
            if [c.source for c in theirs] != [c.source for c in nb.release.cells]:
                stale.append(name)
        return stale
