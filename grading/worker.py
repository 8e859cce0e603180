"""One student, graded in a process and folders of its own: run(job), forked by
grading/__main__ (job: who, where, the limits). Outside the sandbox, the worker repairs
(grading/intake.py) and audits (grading/audit.py) the notebooks (one the audit holds scores 0,
listed in result['held']); starts one sandbox with the judge in it (grading/sandbox.py,
grading/judge.py) and talks to it over a channel per notebook, a thread each, so that the
notebooks run at once; once a notebook's cells have run, sends each graded cell fresh inputs
from a `secrets` seed and judges what comes back with the check's `judge`, here; and writes
submitted/, autograded/ and feedback/ (grading/feedback.py). It leaves result.json: dict(student,
scores, problems, held, seconds), each problem a dict(notebook, cell, stage, text, cause).
"""
import json
import os
import secrets
import shutil
import sys
import threading
import time
import warnings
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat

import checks
from grading import audit, feedback, intake, sandbox
from grading.course import Assignment, grade_id, label, notebook_names, stage_at
from grading.judge import MAX_FRAME, decode, encode, read_frame, send

START_SECONDS = 180  # for the judge to import torch and say it is ready, on a busy machine
# the grader's verdict on one graded cell: right (text None) or why not; whether the answer ran
# at all (if not, the cell that broke it says more); the problem's cause
Verdict = namedtuple('Verdict', 'text ran cause', defaults=(True, None))
FORGED = "held for review: the notebook's code wrote to the judge's pipe itself, as no honest cell does"


def cell_text(status, ename, evalue, memory_mb, what='this cell'):
    """(sentence, cause) for how a cell (or the graded call `what`) ran, as the judge reported it."""
    if status == 'timeout' and ename == 'NotebookTimeout':
        return f'not run: the notebook reached its {evalue} s time limit', 'timeout'
    if status == 'timeout':
        return f'stopped after {evalue} s, the time limit per cell (an infinite loop?)', 'timeout'
    if ename == 'MemoryError' or 'allocate memory' in str(evalue):
        return f'ran out of memory (the limit is {memory_mb} MB)', 'memory'
    if ename == 'Unasked':
        return FORGED, 'held'
    if status == 'crashed':
        went_on = '; the grader started a new one and went on' if what == 'this cell' else ''
        return (f'the process running the notebook died running {what} ({evalue}: os._exit, a crash or the '
                f'memory limit){went_on}', 'crashed')
    if ename == 'SystemExit':
        return 'called sys.exit() or exit(); the grader went on with the next cell', 'error'
    if ename == 'NotImplementedError':
        return 'not written yet (it still raises NotImplementedError)', 'not-written'
    evalue = ' '.join(str(evalue).split())
    return (f'{ename}: {evalue}' if evalue else ename), 'error'


def triple(result):
    """A cell's (status, ename, evalue) as the judge reported it, or None if it is not one."""
    return tuple(map(str, result)) if isinstance(result, (list, tuple)) and len(result) == 3 else None


def judge_reply(spec, gid, cases, reply, job):
    """The grader's Verdict on what the judge sent back for graded cell `gid`."""
    if isinstance(reply, dict) and isinstance(reply.get('gid'), str) and reply['gid'] != gid:
        return Verdict(FORGED, False, 'held')  # a reply to an earlier cell: someone else wrote the one taken for it
    if not isinstance(reply, dict) or reply.get('gid') != gid:
        return Verdict(f'the judge sent back nothing readable for {gid}', False, 'crashed')
    if reply.get('failed'):  # how the call ended, as the judge reports a cell
        text, cause = cell_text(*(triple(reply['failed']) or ('crashed', 'Died', '?')), job['memory_mb'], gid)
        return Verdict(text, False, cause)
    if reply.get('missing'):
        return Verdict(f'`{spec.answer}` is not defined (did the cells above it run without errors?)', False, 'error')
    nodes, outputs = reply.get('autograd_nodes'), reply.get('outputs')
    if not isinstance(outputs, list) or not isinstance(nodes, list) or len(outputs) != len(cases):
        return Verdict(f'the judge sent back outputs for {len(outputs) if isinstance(outputs, list) else 0} of '
                       f'{len(cases)} cases', cause='crashed')
    if any(not isinstance(k, int) or k != 0 for k in nodes):
        made = sum(k for k in nodes if isinstance(k, int))
        return Verdict(f'autograd computed the answer: {made} autograd graph nodes were made while {spec.answer} '
                       "ran on the grader's inputs; compute the gradients by hand", cause='autograd')
    for case, out in zip(cases, outputs):
        hint = spec.judge(case, out)
        if hint is not None:
            text = f'{spec.title}: {hint}' if spec.title else str(hint)
            if 'MemoryError' in text or 'allocate memory' in text:
                return Verdict(f'ran out of memory (the limit is {job["memory_mb"]} MB)', cause='memory')
            return Verdict(text)
    return Verdict(None)


def run_notebook(pipes, nb, release, specs, job):
    """Cells, then graded cells, of one notebook in the judge, over `pipes` (to, from) of its
    own: [cell result or None per cell of nb] and {gid: (spec, cases, reply) or Verdict}."""
    def read(seconds):  # every read capped and timed
        message = decode(read_frame(pipes[1], MAX_FRAME, time.monotonic() + seconds))
        if isinstance(message, dict) and 'judge_error' in message:
            raise RuntimeError(f'the judge stopped: {message["judge_error"]}')
        return message
    if read(START_SECONDS) != 'ready':  # it imported torch while the worker read the notebooks
        raise RuntimeError('the judge did not start')
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == 'code' and grade_id(c) not in release.points]
    graded = [(gid, specs[gid].answer) for gid in release.graded if specs.get(gid)]
    send(pipes[0], encode(dict(cells=[nb.cells[i].source for i in code], graded=graded, timeout=job['timeout'],
                               notebook_timeout=job['notebook_timeout'], memory_mb=job['memory_mb'])))
    done = read(job['notebook_timeout'] + 60)
    ran = [None] * len(nb.cells)
    for i, result in zip(code, done['cells'] if isinstance(done, dict) else []):
        ran[i] = triple(result)
    replies = {}
    for gid in release.graded:
        spec = specs.get(gid)
        if spec is None:
            replies[gid] = Verdict(f'checks/ has no check for {gid}: this release and the kit disagree; scored 0',
                                   False, 'other')
            continue
        try:
            cases = spec.cases(secrets.randbits(63))
        except Exception as e:  # the kit's own trouble: that cell cannot be graded
            replies[gid] = Verdict(f'the grader could not make the inputs of {gid} ({type(e).__name__}: {e}); '
                                   'scored 0', False, 'other')
            continue
        send(pipes[0], encode(dict(gid=gid, cases=cases)))
        replies[gid] = (spec, cases, read(job['timeout'] + job['notebook_timeout'] + 60))
    send(pipes[0], encode('end'))
    return ran, replies


def problems_of(nb, release, ran, verdicts, scores, memory_mb):
    """The problem lines of one judged notebook: per graded cell lost, its verdict, or (when its
    answer never ran) the first cell that broke before it; every other broken cell too."""
    broken = {}  # graded cell (None after the last): [(cell, (text, cause))] for the cells that broke before it
    for j, how in enumerate(ran):
        if how and how[0] != 'ok':
            broken.setdefault(stage_at(nb.cells, j, release.points), []).append((j, cell_text(*how, memory_mb)))
    problems = []
    for stage in [*release.points, None]:
        lost, mine = stage is not None and scores.get(stage, 0) < release.points[stage], broken.get(stage, [])
        if lost and (verdicts[stage].ran or not mine):
            problems.append(dict(cell=stage, stage=stage, text=verdicts[stage].text, cause=verdicts[stage].cause))
        else:
            problems += [dict(cell=label(nb.cells[j]), stage=stage, text=text, cause=cause)
                         for j, (text, cause) in (mine[:1] if lost else mine)]
    return problems


def grade(job):
    started = time.monotonic()
    home, sid = Path(job['course']), job['student']
    course = home / 'course'  # this student's submitted/, autograded/ and feedback/, as nbgrader lays them out
    assignment = Assignment(job['template'], job['assignment'])
    submitted = course / 'submitted' / sid / assignment.name
    submitted.mkdir(parents=True)
    try:  # the judge imports torch while this process reads the notebooks
        box = sandbox.Box([sys.executable, '-m', 'grading.judge'], job.get('cgroups'), home.name, job['memory_mb'],
                          sandbox=job.get('sandbox', True), channels=len(assignment.notebooks))
    except Exception as e:  # said below, for each notebook it should have run
        box, why_not = None, f'{type(e).__name__}: {e}'
    if box:  # taken in while the judge imports torch
        from grading import preload
        threading.Thread(target=send, args=(box.stdin, preload.FRAME), daemon=True).start()
    picked, problems = intake.pick(job['folder'], list(assignment.notebooks), notebook_names(assignment.name))
    for name in ('timestamp.txt', 'submission_secret.txt'):  # nbgrader release_feedback needs both, as handed in
        found = next(Path(job['folder']).rglob(name), None)
        if found is not None:
            (submitted / name).write_bytes(found.read_bytes()[:4096])
    held, repaired = [], {}
    for name, release in assignment.notebooks.items():
        if name not in picked:
            continue
        try:
            nb, found = intake.repair(picked[name], release)
        except Exception as e:  # a notebook odd enough to break the repair costs only itself
            found = [dict(cause='unreadable', text=f'{name}.ipynb could not be read ({type(e).__name__}: {e})')]
            nb = None
        problems += [dict(p, notebook=name) for p in found]
        if nb is None:
            continue
        nbformat.write(nb, submitted / f'{name}.ipynb')
        repaired[name] = nb
        try:
            flagged = audit.scan(nb, release)
        except (RecursionError, ValueError, MemoryError) as e:
            flagged = [(None, f'its code could not be read for tricks ({type(e).__name__}); held for review', 'held')]
        for i, text, cause in flagged:
            problems.append(dict(notebook=name, cell=None if i is None else label(nb.cells[i]), cause=cause, text=text,
                                 stage=None if i is None else stage_at(nb.cells, i, release.points)))
        if any(cause in ('held', 'autograd') for _, _, cause in flagged):
            held.append(name)

    specs = checks.specs()
    scores = {name: {g: 0.0 for g in release.points} for name, release in assignment.notebooks.items()}
    verdicts = {name: {g: Verdict('held for review: the audit named what is listed above', False, 'held')
                       for g in assignment.notebooks[name].graded} if name in held else {} for name in repaired}
    names = [name for name in repaired if name not in held]
    lines, failed, trouble = {}, {} if box else dict.fromkeys(names, why_not), []

    def page(name):  # its feedback, written while the judge runs the other notebooks
        try:
            feedback.write(course, assignment, sid, name, repaired[name], verdicts[name], scores[name],
                           problems + lines.get(name, []), [home, job['out']])
        except Exception as e:  # the feedback's trouble must not cost the grade
            trouble.append(f'the grader could not write the feedback ({type(e).__name__}: {e})')

    # the notebooks run at once, each over a channel of its own, and each is judged here as it ends
    pool = ThreadPoolExecutor(max(len(names), 1))
    todo = {pool.submit(run_notebook, pipes, repaired[name], assignment.notebooks[name], specs, job): name
            for name, pipes in zip(names, box.channels if box else [])}
    for done in as_completed(todo):
        name = todo[done]
        release = assignment.notebooks[name]
        try:
            ran, replies = done.result()
        except Exception as e:  # the judge died or went silent: this notebook scores 0
            failed[name] = f'{type(e).__name__}: {e}' if str(e) else type(e).__name__
            continue
        verdicts[name] = {gid: r if isinstance(r, Verdict) else judge_reply(r[0], gid, r[1], r[2], job)
                          for gid, r in replies.items()}
        if any(v.cause == 'held' for v in verdicts[name].values()):  # a forged reply: held, as by the audit
            held.append(name)
            verdicts[name] = dict.fromkeys(verdicts[name], Verdict(FORGED, False, 'held'))
        scores[name] = {g: release.points[g] if verdicts[name][g].text is None else 0.0 for g in release.points}
        lines[name] = [dict(p, notebook=name) for p in problems_of(repaired[name], release, ran, verdicts[name],
                                                                    scores[name], job['memory_mb'])] \
            if name not in held else [dict(notebook=name, cause='held', text=FORGED)]
        page(name)
    said = [ln for ln in (box.stop() if box else '').splitlines() if ln.strip()]
    for name, why in failed.items():
        lines[name] = [dict(notebook=name, cause='crashed', text=f'the judge stopped while grading this notebook '
                            f'({why}{"; " + said[-1] if said else ""}); scored 0')]
    for name in (name for name in repaired if name in held or name in failed):
        page(name)
    problems += [p for name in repaired for p in lines.get(name, [])]
    problems += [dict(text=t) for t in dict.fromkeys(trouble) if t]
    folder = course / 'feedback' / sid / assignment.name
    for kept in submitted.glob('*.txt') if folder.is_dir() else []:
        shutil.copy(kept, folder)
    return dict(student=sid, scores=scores, problems=problems, held=held, seconds=time.monotonic() - started)


def run(job):
    """Grade the student of `job`, with this process's output going to worker.log in its folder."""
    log = os.open(Path(job['course']) / 'worker.log', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    warnings.filterwarnings('ignore')
    os.environ.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')  # tiny tensors; JOBS workers share the cores
    (Path(job['course']) / 'result.json').write_text(json.dumps(grade(job), indent=1))
