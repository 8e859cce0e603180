"""From a folder of submissions to notebooks nbgrader can grade fairly.

SUBMISSIONS/<student>/ holds that student's notebooks, at any depth (a copy of nbgrader's
submitted/ works too). Archives (.zip, .tar.gz) and loose .ipynb files at the top go through
nbgrader's zip_collect: an archive is named after its student (alice.zip), or --collect-regexp
gives the LMS's file naming. Each notebook is then repaired against the release: anything
nbgrader would trip over or a student could use to move the goalposts is put back, and each
fix becomes a problem line.
"""
import copy
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_raw_cell

from grading.course import grade_id

# an archive alice.zip unpacks into extracted/alice/...: alice is the student
DEFAULT_REGEXP = r'.*/extracted/(?P<student_id>[^/]+)/(?:[^/]+/)*(?P<file_id>[^/]+\.ipynb)$'


def visible(path, top):
    """Not junk from an archive or from Jupyter: checkpoints, __MACOSX, hidden files."""
    parts = path.relative_to(top).parts
    return not any(p.startswith('.') or p == '__MACOSX' for p in parts) and not path.stem.endswith('-checkpoint')


def find_students(submissions, work, assignment, regexp):
    """{student: folder holding their notebooks}, and problems found on the way. The files go through
    nbgrader zip_collect all at once; if it fails, each alone, so one broken archive costs only its own student(s)."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise SystemExit(f'no such folder: {submissions}')
    entries = [e for e in sorted(submissions.iterdir()) if visible(e, submissions)]
    students = {e.name: e for e in entries if e.is_dir()}
    files = [e for e in entries if e.is_file() and e.suffix in ('.zip', '.gz', '.ipynb')]
    work, problems = Path(work) / 'collect', []
    collected, failed = zip_collect(files, work / 'all', assignment, regexp) if files else ({}, None)
    for i, f in enumerate(files if failed else []):
        found, error = zip_collect([f], work / f'{i:04d}', assignment, regexp)
        for student, folder in found.items():
            collected.setdefault(student, folder)
        if error is not None:
            problems.append(dict(student=f.name.split('.')[0], text=f'{f.name}: nbgrader zip_collect '
                                 f'could not collect it: {error}'))
    for student, folder in collected.items():
        if student in students:
            problems.append(dict(student=student, text=f'handed in both a folder and an archive; '
                                 f'graded the folder {students[student].name}/'))
        else:
            students[student] = folder
    return students, problems


def zip_collect(files, course, assignment, regexp):
    """({student: folder} collected in `course`, None) or ({}, why not)."""
    shutil.rmtree(course, ignore_errors=True)
    archive = course / 'downloaded' / assignment / 'archive'
    archive.mkdir(parents=True)
    for f in files:
        shutil.copy(f, archive / f.name)
    run = subprocess.run([str(Path(sys.executable).parent / 'nbgrader'), 'zip_collect', assignment, '--force',
                          f'--FileNameCollectorPlugin.named_regexp={regexp}', '--log-level=ERROR'],
                         cwd=course, capture_output=True, text=True)
    if run.returncode != 0:
        lines = [ln for ln in (run.stderr + run.stdout).splitlines() if ln.strip()]
        return {}, lines[-1] if lines else f'exit code {run.returncode}'
    folders = sorted((course / 'submitted').iterdir()) if (course / 'submitted').is_dir() else []
    return {d.name: d / assignment for d in folders if (d / assignment).is_dir()}, None


# ---------------------------------------------------------------- which file is which notebook

def pick(folder, names, known=()):
    """{notebook name: file} for the release's notebooks found in a student's folder, and
    problems: missing notebooks, extra ones, several copies, a renamed copy used instead.
    `known`: the assignment's notebooks not graded this time, passed over in silence."""
    folder = Path(folder)
    files = sorted((p for p in folder.rglob('*.ipynb') if p.is_file() and visible(p, folder)),
                   key=lambda p: (len(p.relative_to(folder).parts), str(p)))
    picked, problems = {}, []
    for name in names:
        found = [p for p in files if p.name == f'{name}.ipynb']
        if found:
            picked[name] = found[0]
            if len(found) > 1:
                problems.append(dict(notebook=name, text=f'{len(found)} copies of {name}.ipynb; graded '
                                     f'{found[0].relative_to(folder)}'))
    rest = [p for p in files if p not in picked.values() and (p.stem in names or p.stem not in known)]
    for name in [n for n in names if n not in picked]:
        copies = [p for p in rest if name in p.stem]
        if len(copies) == 1:
            picked[name] = copies[0]
            rest.remove(copies[0])
            problems.append(dict(notebook=name, text=f'{name}.ipynb is missing; graded '
                                 f'{copies[0].relative_to(folder)} in its place'))
        else:
            problems.append(dict(notebook=name, text=f'{name}.ipynb is missing', cause='missing'))
    problems += [dict(text=f'extra notebook {p.relative_to(folder)} is not part of the assignment; not graded')
                 for p in rest]
    return picked, problems


# ---------------------------------------------------------------- reading and repairing one notebook

def read(path, cap=200 * 2**20):
    """The notebook at `path`, or None and why it cannot be read (a notebook of this course,
    outputs and all, is a few MB: `cap` bytes at most)."""
    size = path.stat().st_size
    if size > cap:
        return None, f'is {size / 2**20:.0f} MB, too large to be this notebook (the limit is {cap / 2**20:.0f} MB)'
    raw = path.read_bytes()
    if not raw.strip():
        return None, 'is an empty file'
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        return None, 'is not a text file, so not a notebook'
    except json.JSONDecodeError as e:
        return None, f'is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): cut short or edited by hand?'
    if not isinstance(data, dict) or not isinstance(data.get('cells', data.get('worksheets')), list):
        return None, 'is JSON but not a Jupyter notebook (it has no list of cells)'
    try:
        return nbformat.reads(raw.decode('utf-8'), as_version=4, capture_validation_error={}), None
    except Exception as e:
        return None, f'is not a notebook nbformat can read ({type(e).__name__}: {e})'


def clean_cell(cell):
    """A fresh cell with only the type, the source and nbgrader's metadata of `cell`: the
    rest (outputs, tags such as skip-execution, odd fields) never reaches the grader."""
    source = cell.get('source', '')
    source = ''.join(str(s) for s in source) if isinstance(source, list) else str(source)
    new = {'code': new_code_cell, 'raw': new_raw_cell}.get(cell.get('cell_type'), new_markdown_cell)(source)
    meta = cell.get('metadata')
    nbg = meta.get('nbgrader') if isinstance(meta, dict) else None
    if isinstance(nbg, dict) and isinstance(nbg.get('grade_id'), str):
        new.metadata['nbgrader'] = copy.deepcopy(nbg)
    return new


def tagged(cell):
    """Whether `cell` carries a tag that would change how it runs."""
    meta = cell.get('metadata')
    tags = meta.get('tags') if isinstance(meta, dict) else None
    return isinstance(tags, list) and any(t in ('skip-execution', 'raises-exception') for t in tags)


def repair(path, release):
    """(notebook to grade, problems) for the notebook a student handed in at `path`, against `release`
    (a course.Notebook): cells are matched by grade id and laid out in the release's order,
    read-only cells are the release's, deleted cells come back, a cell's extra copies and
    cells unknown to this release stay as the student's own cells next to where they were."""
    nb, why = read(path)
    if nb is None:
        return None, [dict(text=f'{release.name}.ipynb {why}', cause='unreadable')]
    problems = []
    cells = [c for c in nb.get('cells', []) if isinstance(c, dict)]
    tags = [str(i + 1) for i, c in enumerate(cells) if tagged(c)]
    cells = [clean_cell(c) for c in cells]
    if tags:
        problems.append(dict(text=f'cells {", ".join(tags)} carried skip-execution/raises-exception tags; ignored'))

    where = defaultdict(list)  # grade id: where its copies are
    for i, c in enumerate(cells):
        if grade_id(c):
            where[grade_id(c)].append(i)
    unknown = [g for g in where if g not in release.cells]
    doubled = [g for g in release.order if len(where.get(g, [])) > 1]
    kept = {where[g][-1]: g for g in where if g in release.cells}  # the last copy, as nbgrader does
    present = sorted(kept.values(), key=lambda g: where[g][-1])
    if present != [g for g in release.order if g in present]:
        problems.append(dict(text='cells were moved around; graded in the release\'s order'))

    after, anchor = defaultdict(list), None  # the student's own cells, after the release cell they followed
    for i, c in enumerate(cells):
        if i in kept:
            anchor = kept[i]
        else:
            c.metadata.pop('nbgrader', None)
            after[anchor].append(c)

    out, deleted, edited, older, retyped, repointed = list(after[None]), [], [], [], [], []
    for g in release.order:
        ref = release.cells[g]
        fixed = copy.deepcopy(ref)
        out += [fixed] + after[g]
        if g not in where:
            deleted.append(g)
            continue
        mine = cells[where[g][-1]]
        theirs = mine.metadata['nbgrader']
        if mine.cell_type != ref.cell_type:  # nbgrader would turn it back too
            retyped.append(g)
        if g in release.points and theirs.get('points') != ref.metadata.nbgrader['points']:
            repointed.append(f'{g} ({theirs.get("points")} instead of {ref.metadata.nbgrader["points"]:g})')
        if g not in release.locked:
            fixed.source = mine.source
        elif mine.source.strip() != ref.source.strip():
            made_older = theirs.get('checksum') not in (None, ref.metadata.nbgrader.get('checksum'))
            (older if made_older else edited).append(g)

    said = [(unknown + older, 'made from an older release ({} differ from the current one); graded against the '
             'current release' + (', with {} added' if deleted else '')),
            ([] if unknown or older else deleted, 'deleted {}; put back from the release'),
            (doubled, '{} appear more than once; all copies ran, top to bottom, and the last one counts as the '
             'graded cell'),
            (retyped, '{} changed cell type; graded as in the release'),
            (edited, 'edited the read-only {}; graded with the originals'),
            (repointed, 'changed the points of {}; put back')]
    problems += [dict(text=text.format(', '.join(ids), ', '.join(deleted))) for ids, text in said if ids]

    fixed_nb = nbformat.v4.new_notebook(cells=out, metadata=copy.deepcopy(release.release.metadata))
    nbformat.validate(fixed_nb)
    return fixed_nb, problems
