"""One student, graded in a process and folders of its own.

    python -m grading.worker JOB.json      (what grading/__main__ forks: run(JOB.json))

JOB.json says who (student, folder with their notebooks), where (course: this student's
private folder; template: the folder made by course.make_template), what to hide from the
sandbox and the limits. The worker, outside the sandbox:
1. repairs and audits the notebooks, and writes them into the sandbox's scratch course
   folder (course/box) with a copy of the template gradebook;
2. draws a seed per graded cell with `secrets` and writes each check's fresh inputs into
   box/handin/inputs (keeping its own copy);
3. runs nbgrader autograde in the sandbox (grading.inside, grading.sandbox): the kernel
   runs the student's answers on those inputs and writes box/handin/outputs;
4. once nothing is left running in there, reads what it needs out of the box safely
   (regular files only, sizes bounded, torch.load(weights_only=True)), judges every case
   with the check's own `judge` (PyTorch's float64 reference, in this process), scores
   each graded cell, and writes the feedback from a gradebook of its own.
It leaves result.json in its private folder: the scores of every graded cell and the
problems found, each a dict(notebook, cell, stage, text).
"""
import io
import json
import os
import re
import secrets
import shutil
import stat
import sys
import warnings
from pathlib import Path
from time import monotonic

import nbformat

from grading import audit, feedback, intake, sandbox
from grading.course import Assignment, grade_id, label, notebook_names, stage_at
from grading.execute import DISPLAY_DROPPED, DROPPED

MAX_BYTES = 200 * 2**20  # a notebook of this course, outputs and all, is a few MB
MAX_HANDIN = 64 * 2**20  # what one hidden test hands in: parameters and gradients, well under 1 MB
DROPPED_RE = re.compile(re.escape(DROPPED).replace(r'\{\}', r'(\d+)'))
DISPLAY_RE = re.compile(re.escape(DISPLAY_DROPPED).replace(r'\{\}', r'(\d+)'))


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


def verdicts(nb, release, scores, hints, memory_mb):
    """Problems read from an autograded notebook, given the grader's `scores` and `hints`
    ({grade id: its Verdict})."""
    problems = []
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
        if lost and (hints[stage].handed_in or not errors):
            text = hints[stage].text
            if "can't allocate memory" in text or 'Cannot allocate memory' in text or 'MemoryError' in text:
                text = f'ran out of memory (the limit is {memory_mb} MB)'
            problems.append(dict(cell=stage, stage=stage, text=text))
        else:
            for j, e in (errors[:1] if lost else errors):
                problems.append(dict(cell=label(nb.cells[j]), stage=stage, text=describe(e, memory_mb)))
        for j in segment:
            text = printed(nb.cells[j])
            for dropped in DROPPED_RE.findall(text):
                problems.append(dict(cell=label(nb.cells[j]), stage=stage, text=f'printed too much; the '
                                     f'grader dropped {int(dropped):,} characters of its output'))
            for dropped in DISPLAY_RE.findall(text):
                problems.append(dict(cell=label(nb.cells[j]), stage=stage, text=f'displayed too much; the '
                                     f'grader dropped {int(dropped):,} displayed outputs'))
        segment = []
    return problems


# ---------------------------------------------------------------- outside the sandbox: inputs and verdicts

def spec_of(gid):
    """The check of graded cell `gid` (checks.spec), or None when checks/ has none for it."""
    import checks
    try:
        return checks.spec(gid)
    except KeyError:
        return None


class Verdict:
    """The grader's verdict on one graded cell: right (text None) or why not, and whether
    the kernel handed in anything at all."""

    def __init__(self, text, handed_in=True):
        self.text, self.handed_in = text, handed_in


def read_box_file(box, rel, limit):
    """The bytes of BOX/rel if it is a regular file of at most `limit` bytes reached without
    symlinks, else (None, why). The sandbox wrote there: never follow a link, never block
    on a FIFO, never read without bound."""
    path = Path(box)
    for part in Path(rel).parts:
        path = path / part
        try:
            st = os.lstat(path)
        except OSError:
            return None, 'missing'
        if stat.S_ISLNK(st.st_mode):
            return None, 'a symbolic link'
    if not stat.S_ISREG(st.st_mode):
        return None, 'not a regular file'
    if st.st_size > limit:
        return None, f'{st.st_size / 2**20:.0f} MB, over the {limit / 2**20:.0f} MB limit'
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return None, f'unreadable ({e.strerror})'
    with os.fdopen(fd, 'rb') as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        return None, f'over the {limit / 2**20:.0f} MB limit'
    return data, None


def write_inputs(box, specs):
    """{grade id: the input cases} for every check, each drawn from a fresh secret seed and
    written to BOX/handin/inputs/<grade id>.pt for the kernel; and problems."""
    import torch
    folder = Path(box) / 'handin' / 'inputs'
    folder.mkdir(parents=True)
    (Path(box) / 'handin' / 'outputs').mkdir()
    cases, problems = {}, []
    for gid, spec in specs.items():
        try:
            cases[gid] = spec.cases(secrets.randbits(63))
            torch.save({'cases': cases[gid]}, folder / f'{gid}.pt')
        except Exception as e:  # the kit's own trouble: that cell cannot be graded
            cases.pop(gid, None)
            problems.append((gid, f'the grader could not make the inputs of {gid} ({type(e).__name__}: {e}); scored 0'))
    return cases, problems


def judge(box, gid, spec, cases):
    """The grader's Verdict on graded cell `gid` from what its hidden test handed in."""
    import torch
    data, why = read_box_file(box, f'handin/outputs/{gid}.pt', MAX_HANDIN)
    if data is None:
        return Verdict(f'the hidden test of {gid} handed in nothing' +
                       ('' if why == 'missing' else f' readable (its file is {why})') +
                       ' (did the cells above it run without errors?)', handed_in=why != 'missing')
    try:
        outputs = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as e:
        return Verdict(f'the hidden test of {gid} handed in a file the grader cannot read ({type(e).__name__})')
    got = outputs.get('cases') if isinstance(outputs, dict) else None
    if not isinstance(got, list) or len(got) != len(cases):
        return Verdict(f'the hidden test of {gid} handed in {"" if isinstance(got, list) else "no "}'
                       f'outputs for {len(got) if isinstance(got, list) else 0} of {len(cases)} cases')
    for inputs, out in zip(cases, got):
        try:
            hint = spec.judge(inputs, out)
        except Exception as e:  # a judge must not raise; if it does, this cell scores 0, nothing more
            hint = f'the grader could not judge what it handed in ({type(e).__name__}: {e})'
        if hint is not None:
            title = getattr(spec, 'title', '')
            return Verdict(f'{title}: {hint}' if title else str(hint))
    return Verdict(None)


def safe_notebook(box, rel):
    """The autograded notebook at BOX/rel, read safely, or None."""
    data, _ = read_box_file(box, rel, MAX_BYTES)
    if data is None:
        return None
    try:
        return nbformat.reads(data.decode('utf-8'), as_version=4)
    except Exception:
        return None


def grade(job):
    started = monotonic()
    home, sid = Path(job['course']), job['student']
    box, course = home / 'box', home / 'course'
    assignment = Assignment(job['template'], job['assignment'])
    submitted = box / 'submitted' / sid / assignment.name
    submitted.mkdir(parents=True)
    shutil.copy(assignment.gradebook, box / 'gradebook.db')
    problems, flags = [], {}  # flags: what the audit named, per notebook handed to nbgrader

    picked, found = intake.pick(job['folder'], list(assignment.notebooks), notebook_names(assignment.name))
    problems += found
    kept = {}  # nbgrader release_feedback needs both beside the feedback, as the student handed them in
    for name in ('timestamp.txt', 'submission_secret.txt'):
        found = next(Path(job['folder']).rglob(name), None)
        if found is not None:
            kept[name] = found.read_bytes()[:4096]
            (submitted / name).write_bytes(kept[name])
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
    # what the grader itself wrote, kept out of the sandbox's reach
    shutil.copytree(box / 'submitted', course / 'submitted')

    specs = {gid: spec_of(gid) for name in flags for gid in assignment.notebooks[name].graded}
    cases, trouble = write_inputs(box, {gid: s for gid, s in specs.items() if s is not None})
    for name in flags:
        for gid in assignment.notebooks[name].graded:
            if specs[gid] is None:
                trouble.append((gid, f'checks/ has no check for {gid}: this release and the kit disagree; scored 0'))
            problems += [dict(notebook=name, cell=gid, stage=gid, text=text) for g, text in trouble if g == gid]

    if flags:
        (box / 'box.json').write_text(json.dumps(dict(
            student=sid, assignment=assignment.name, timeout=job['timeout'],
            notebook_timeout=job['notebook_timeout'])))
        env = dict(os.environ, BPN_HANDIN=str(box / 'handin'), PYTHONDONTWRITEBYTECODE='1')
        seconds = len(flags) * (job['notebook_timeout'] + 60) + 60
        with open(home / 'box.log', 'wb') as log:
            code, notes = sandbox.run([sys.executable, '-m', 'grading.inside', str(box)], box,
                                      job.get('hidden', []), env, seconds, job.get('cgroup'),
                                      sandbox=job.get('sandbox', True), log=log)
        if code is None:
            problems.append(dict(text=f'grading took longer than {seconds} s and was stopped'))
        elif code < 0 or code > 128:  # a signal: the notebook killed nbgrader (only it can, in there)
            problems.append(dict(text=f'grading stopped early: nbgrader was killed (signal {abs(code) % 128}); '
                                      'did the notebook kill processes?'))
        elif code:
            lines = [ln for ln in (home / 'box.log').read_text(errors='replace').splitlines()
                     if ln.strip() and 'WARNING' not in ln]
            problems.append(dict(text=f'nbgrader could not autograde: {lines[-1] if lines else f"exit code {code}"}'))

    scores, notebooks = {}, {}
    for name, release in assignment.notebooks.items():
        if name not in flags:  # not handed in, or unreadable: 0, with its problem line above
            scores[name] = {g: 0.0 for g in release.points}
            continue
        hints = {gid: judge(box, gid, specs[gid], cases[gid]) if gid in cases else
                 Verdict(f'the grader could not make the inputs of {gid}', handed_in=False) for gid in release.graded}
        scores[name] = {g: release.points[g] if hints[g].text is None else 0.0 for g in release.points}
        nb = safe_notebook(box, f'autograded/{sid}/{assignment.name}/{name}.ipynb')
        if nb is None:
            problems.append(dict(notebook=name, text=f'{name}.ipynb ran, but the grader could not read it back'))
            problems += [dict(notebook=name, cell=g, stage=g, text=hints[g].text) for g in release.graded
                         if hints[g].text is not None]
            continue
        raw = course / 'autograded' / sid / assignment.name / f'{name}.ipynb'
        raw.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, raw)
        problems += [dict(p, notebook=name) for p in verdicts(nb, release, scores[name], hints, job['memory_mb'])]
        notebooks[name] = nb

    if notebooks:
        (home / 'fb').mkdir()
        try:
            result = feedback.write(home / 'fb', assignment, sid, notebooks, scores, problems,
                                    [box, home, job.get('out', home)])
        except Exception as e:  # the feedback's trouble must not cost the grade
            result = f'the grader could not write the feedback ({type(e).__name__}: {e})'
        if result:
            problems.append(dict(text=result))
        pages = home / 'fb' / 'feedback' / sid / assignment.name
        if pages.is_dir():  # from the submissions folder, which the sandbox never saw
            for name, data in kept.items():
                (pages / name).write_bytes(data)
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
