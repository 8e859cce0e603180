"""One student, graded in a process and an nbgrader course folder of its own.

    python -m grading.worker JOB.json      (what grading/__main__ forks: run(JOB.json))

JOB.json says who (student, folder with their notebooks), where (course: a scratch folder;
template: the folder made by course.make_template) and the limits. The worker repairs and
audits the notebooks, runs nbgrader autograde (through RobustExecute and with the kernel
capped, see kernel_start), checks each passing hidden test printed its receipt, writes the
feedback, and leaves result.json in the course folder: the scores of every graded cell and
the problems found, each a dict(notebook, cell, stage, text).
"""
import json
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from time import monotonic

import nbformat

from grading import audit, intake
from grading.course import Assignment, grade_id, kit_config, label, notebook_names, stage_at
from grading.execute import DROPPED

MAX_BYTES = 200 * 2**20  # a notebook of this course, outputs and all, is a few MB
PUT_BACK = re.compile(r'^\[grader\] put back (\S+), which the notebook had replaced', re.M)
DROPPED_RE = re.compile(re.escape(DROPPED).replace(r'\{\}', r'(\d+)'))


def nbgrader_config(course, job):
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern,
                                        LimitOutput, SaveAutoGrades)
    from grading.execute import RobustExecute
    cfg = kit_config(course)
    cfg.Autograde.autograde_preprocessors = [RobustExecute, IgnorePattern, ClearMetadataPreprocessor,
                                             LimitOutput, SaveAutoGrades, AssignLatePenalties,
                                             CheckCellMetadata]
    cfg.Execute.timeout = job['timeout']
    cfg.RobustExecute.notebook_timeout = job['notebook_timeout']
    cfg.Execute.extra_arguments = ["--IPKernelApp.exec_lines=__import__('grading.kernel_start')"]
    return cfg


def describe(out, memory_mb):
    """One sentence for an error output of a cell."""
    ename, evalue = out.get('ename', ''), ' '.join(str(out.get('evalue', '')).split())
    if ename in ('CellTimeoutError', 'DeadKernelError'):
        return evalue
    if ename == 'MemoryError' or "can't allocate memory" in evalue or 'Cannot allocate memory' in evalue:
        return f'ran out of memory (the limit is {memory_mb} MB)'
    if ename == 'SystemExit':
        return 'called sys.exit() or exit(); the grader went on with the next cell'
    if ename == 'NotImplementedError':
        return 'not written yet (it still raises NotImplementedError)'
    if ename == 'GradingError':
        return evalue
    return f'{ename}: {evalue}' if evalue else ename


def first_error(cell):
    errors = [o for o in cell.get('outputs', []) if o.get('output_type') == 'error']
    timeouts = [o for o in errors if o.get('ename') in ('CellTimeoutError', 'DeadKernelError')]
    return (timeouts or errors or [None])[0]


def printed(cell):
    return ''.join(o.get('text', '') for o in cell.get('outputs', []) if o.get('output_type') == 'stream')


def verdicts(nb, release, scores, memory_mb, flags):
    """Problems read from an autograded notebook, and the graded cells whose hidden check
    passed without printing its receipt (their scores are not to be trusted)."""
    problems, untrusted = [], []
    segment = []
    for i, cell in enumerate(nb.cells):
        segment.append(i)
        gid = grade_id(cell)
        if gid not in release.points and i < len(nb.cells) - 1:
            continue
        stage = gid if gid in release.points else None
        errors = [(j, first_error(nb.cells[j])) for j in segment if nb.cells[j].cell_type == 'code']
        errors = [(j, e) for j, e in errors if e is not None]
        lost = stage is not None and scores.get(stage, 0) < release.points[stage]
        for j, e in (errors[:1] if lost else errors):
            problems.append(dict(cell=label(nb.cells[j]), stage=stage, text=describe(e, memory_mb)))
        if lost and not errors:  # nbgrader also takes the points of a graded cell that wrote to stderr
            stderr = [o for o in cell.get('outputs', []) if o.get('output_type') == 'stream' and o.get('name') == 'stderr']
            problems.append(dict(cell=stage, stage=stage, text='wrote to stderr, which costs a graded cell its points'
                                 if stderr else 'lost its points without an error'))
        for j in segment:
            text = printed(nb.cells[j])
            for dropped in DROPPED_RE.findall(text):
                problems.append(dict(cell=label(nb.cells[j]), stage=stage, text=f'printed too much; the '
                                     f'grader dropped {int(dropped):,} characters of its output'))
            for name in PUT_BACK.findall(text):
                if not any(f'`{name}`' in t for t in flags):
                    problems.append(dict(cell=label(nb.cells[j]), stage=stage,
                                         text=f'replaces `{name}` (put back while grading)'))
        if stage is not None and scores.get(stage, 0) > 0 and release.receipts.get(stage):
            mine = {ln.strip() for ln in printed(cell).splitlines()}
            if not set(release.receipts[stage]) <= mine:
                untrusted.append(stage)
                problems.append(dict(cell=stage, stage=stage, text='its hidden check never said it passed '
                                     '(the notebook replaced or skipped the grader\'s checks); scored 0'))
        segment = []
    return problems, untrusted


def grade(job):
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.apps import NbGraderAPI

    started = monotonic()
    course, sid = Path(job['course']), job['student']
    assignment = Assignment(job['template'], job['assignment'])
    shutil.copy(assignment.gradebook, course / 'gradebook.db')
    submitted = course / 'submitted' / sid / assignment.name
    submitted.mkdir(parents=True, exist_ok=True)
    problems, flags = [], {}  # flags: what the audit named, per notebook handed to nbgrader

    picked, found = intake.pick(job['folder'], list(assignment.notebooks), notebook_names(assignment.name))
    problems += found
    for kept in ('timestamp.txt', 'submission_secret.txt'):  # nbgrader release_feedback needs both
        found = next(Path(job['folder']).rglob(kept), None)
        if found is not None:
            shutil.copy(found, submitted / kept)
    for name, release in assignment.notebooks.items():
        if name not in picked:
            continue
        size = picked[name].stat().st_size
        if size > MAX_BYTES:
            problems.append(dict(notebook=name, text=f'{name}.ipynb is {size / 2**20:.0f} MB, too large to '
                                 f'be this notebook (the limit is {MAX_BYTES / 2**20:.0f} MB)'))
            continue
        try:
            nb, found = intake.repair(picked[name].read_bytes(), release)
        except Exception as e:  # a notebook odd enough to break the repair costs only itself
            nb, found = None, [dict(text=f'{name}.ipynb could not be read ({type(e).__name__}: {e})')]
        problems += [dict(p, notebook=name) for p in found]
        if nb is None:
            continue
        nbformat.write(nb, submitted / f'{name}.ipynb')
        flags[name] = []
        try:
            flagged = audit.scan(nb, release)
        except (RecursionError, ValueError, MemoryError) as e:
            flagged = []
            problems.append(dict(notebook=name, text=f'its code could not be read for tricks ({type(e).__name__})'))
        for i, text in flagged:
            flags[name].append(text)
            problems.append(dict(notebook=name, cell=label(nb.cells[i]),
                                 stage=stage_at(nb.cells, i, release.points), text=text))

    api = NbGraderAPI(config=nbgrader_config(course, job))
    if flags:
        result = api.autograde(assignment.name, sid, force=True, create=True)
        (course / 'autograde.log').write_text((result.get('log') or '') + (result.get('error') or ''))
        if not result['success']:
            lines = [ln for ln in (result.get('error') or result.get('log') or '').splitlines() if ln.strip()]
            problems.append(dict(text=f'nbgrader could not autograde: {lines[-1] if lines else "no log"}'))

    scores = {}
    db = f'sqlite:///{course / "gradebook.db"}'
    with Gradebook(db) as gb:
        for name, release in assignment.notebooks.items():
            try:
                graded = {g.name: float(g.score or 0) for g in gb.find_submission_notebook(name, assignment.name, sid).grades}
            except MissingEntry:
                graded = {}
            scores[name] = {g: graded.get(g, 0.0) for g in release.points}
            path = course / 'autograded' / sid / assignment.name / f'{name}.ipynb'
            if name not in flags or not path.exists():
                continue
            found, untrusted = verdicts(nbformat.read(path, as_version=4), release, scores[name],
                                        job['memory_mb'], flags[name])
            problems += [dict(p, notebook=name) for p in found]
            for gid in untrusted:
                gb.find_grade(gid, name, assignment.name, sid).auto_score = 0
                scores[name][gid] = 0.0
            gb.db.commit()

    if flags and any((course / 'autograded' / sid).glob('*/*.ipynb')):
        result = api.generate_feedback(assignment.name, sid, force=True)
        if not result['success']:
            problems.append(dict(text='nbgrader could not write the feedback'))
    return dict(student=sid, scores=scores, problems=problems, seconds=monotonic() - started)


def run(job_path):
    """Grade the student of JOB.json, with this process's output going to worker.log next to it."""
    job = json.loads(Path(job_path).read_text())
    log = os.open(Path(job['course']) / 'worker.log', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    warnings.filterwarnings('ignore')
    os.environ.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',  # tiny tensors; JOBS kernels share the cores
                      BPN_MEMORY_LIMIT_MB=str(job['memory_mb']))  # read by grading.kernel_start
    result = grade(job)
    (Path(job['course']) / 'result.json').write_text(json.dumps(result, indent=1))


if __name__ == '__main__':
    run(sys.argv[1])
