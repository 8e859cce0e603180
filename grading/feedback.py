"""The student's feedback pages, written by the grader from its own verdicts.

nbgrader's generate_feedback renders them, from a gradebook this process made (never the
one the sandbox could write) and from a copy of each autograded notebook made readable:
- each cell's printed output is one block (stream chunks joined), whatever the kernel sent;
- test cells show the release's source: the hidden tests stay hidden;
- no file path of the grading machine is left in any output;
- every problem line reaches the page: at the top, and as the comment of the answer cell
  it is about;
- long lines wrap inside the page and markdown tables have borders.
"""
import copy
import html
import re
import shutil
import sys
import sysconfig
from pathlib import Path

import nbformat

from grading.course import ROOT, grade_id, kit_config

STYLE = '''<style>
div.output_area pre, div.output_text pre, pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.rendered_html table { border-collapse: collapse; margin: 0.6em 0; }
.rendered_html th, .rendered_html td { border: 1px solid #bbb; padding: 0.25em 0.6em; }
.rendered_html thead, .rendered_html th { background: #f2f2f2; }
div.grader-problems { border-left: 4px solid #c8453c; background: #fbf1f0; padding: 0.5em 1em; margin: 0.5em 0; }
div.grader-problems ul { margin: 0.3em 0 0 0; }
</style>
'''
KERNEL_FILE = re.compile(r'/tmp/ipykernel_\d+/\d+\.py')


def machine_paths(extra):
    """(path, what to show instead), longest first: the folders a traceback would reveal."""
    pairs = [(str(p), '.') for p in extra]
    pairs += [(str(ROOT), '<kit>'), (sys.prefix, '<python>'), (sys.base_prefix + '/lib', '<python>/lib'),
              (sysconfig.get_paths()['stdlib'], '<python>/lib'), (str(Path.home()), '~')]
    return sorted({p: r for p, r in pairs if p and p != '/'}.items(), key=lambda pr: -len(pr[0]))


def scrub(text, paths):
    text = KERNEL_FILE.sub('<cell>', text)
    for path, instead in paths:
        text = text.replace(path, instead)
    return text


def readable(nb, release, paths):
    """A copy of autograded notebook `nb` fit to show the student (see the module's doc)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid in release.cells and gid in release.locked:
            cell.source = release.cells[gid].source  # the release's: no hidden tests
        if cell.cell_type != 'code':
            continue
        outputs = []
        for out in cell.get('outputs', []):
            if out.get('output_type') == 'stream' and outputs and outputs[-1].get('output_type') == 'stream' \
                    and outputs[-1].get('name') == out.get('name'):
                outputs[-1]['text'] += out.get('text', '')
                continue
            outputs.append(out)
        for out in outputs:
            if out.get('output_type') == 'stream':
                out['text'] = scrub(out.get('text', ''), paths)
            elif out.get('output_type') == 'error':
                out['evalue'] = scrub(str(out.get('evalue', '')), paths)
                out['traceback'] = [scrub(str(t), paths) for t in out.get('traceback', [])]
            elif 'data' in out:
                for kind in ('text/plain', 'text/html', 'text/markdown'):
                    if isinstance(out['data'].get(kind), str):
                        out['data'][kind] = scrub(out['data'][kind], paths)
        cell.outputs = outputs
    return nb


def answer_cell(release, p):
    """The answer cell a problem line is about: its own cell, or the last answer before its stage."""
    if p.get('cell') in release.solutions:
        return p['cell']
    stage = p.get('stage') or p.get('cell')
    if stage not in release.order:
        return None
    before = [g for g in release.order[:release.order.index(stage)] if g in release.solutions]
    return before[-1] if before else None


def problem_box(lines):
    if not lines:
        return ''
    items = ''.join(f'<li>{html.escape(t)}</li>' for t in lines)
    return f'<div class="grader-problems"><b>What the grader found:</b><ul>{items}</ul></div>'


def write(folder, assignment, sid, notebooks, scores, problems, scrub_paths=()):
    """Feedback HTML in FOLDER/feedback/<sid>/<assignment>/ for `notebooks` ({name:
    autograded notebook}), showing the grader's `scores` and `problems`. None, or what went wrong."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    folder = Path(folder)
    shutil.copy(assignment.gradebook, folder / 'gradebook.db')
    paths = machine_paths(scrub_paths)
    mine = {name: [p for p in problems if p.get('notebook') in (name, None)] for name in notebooks}
    with Gradebook(f'sqlite:///{folder / "gradebook.db"}') as gb:
        gb.update_or_create_student(sid)
        gb.update_or_create_submission(assignment.name, sid)
        for name, nb in notebooks.items():
            release = assignment.notebooks[name]
            for gid in release.graded:
                grade = gb.find_grade(gid, name, assignment.name, sid)
                grade.auto_score = scores[name].get(gid, 0.0)
                grade.needs_manual_grade = False
            said = {}
            for p in mine[name]:
                where = answer_cell(release, p)
                if where:
                    said.setdefault(where, []).append(p['text'])
            for gid in release.solutions:
                comment = gb.find_comment(gid, name, assignment.name, sid)
                comment.manual_comment = '\n\n'.join(scrub(t, paths) for t in said.get(gid, [])) or None
            out = folder / 'autograded' / sid / assignment.name / f'{name}.ipynb'
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(readable(nb, release, paths), out)
        gb.db.commit()
    result = NbGraderAPI(config=kit_config(folder)).generate_feedback(assignment.name, sid, force=True)
    if not result['success']:
        return 'nbgrader could not write the feedback'
    for name in notebooks:
        page = folder / 'feedback' / sid / assignment.name / f'{name}.html'
        if not page.exists():
            continue
        text = page.read_text()
        text = text.replace('</head>', STYLE + '</head>', 1)
        box = problem_box([(f'{p["cell"]}: ' if p.get('cell') else '') + scrub(p['text'], paths) for p in mine[name]])
        text = re.sub(r'(</h4>)', lambda m: m.group(1) + box, text, count=1)
        page.write_text(scrub(text, paths))
    return None
