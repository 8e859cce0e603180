"""The student's feedback pages, rendered by nbgrader's generate_feedback from the grader's
scores and the notebook as handed in (repaired: the test cells are the release's, so the
hidden tests stay hidden), each graded test cell showing the grader's verdict. Every problem
line reaches the page, at the top and as the comment of the answer cell it is about; no file
path of the grading machine is left in it; long lines wrap and markdown tables have borders.
"""
import copy
import html
import shutil
import sys
import sysconfig
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from grading import gradebook
from grading.course import ROOT, kit_config

STYLE = '''<style>
div.output_area pre, div.output_text pre, pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.rendered_html table { border-collapse: collapse; margin: 0.6em 0; }
.rendered_html th, .rendered_html td { border: 1px solid #bbb; padding: 0.25em 0.6em; }
.rendered_html thead, .rendered_html th { background: #f2f2f2; }
div.grader-problems { border-left: 4px solid #c8453c; background: #fbf1f0; padding: 0.5em 1em; margin: 0.5em 0; }
div.grader-problems ul { margin: 0.3em 0 0 0; }
</style>
'''


def machine_paths(extra):
    """(path, what to show instead), longest first: the folders a message could reveal."""
    pairs = [(str(p), '.') for p in extra]
    pairs += [(str(ROOT), '<kit>'), (sys.prefix, '<python>'), (sys.base_prefix + '/lib', '<python>/lib'),
              (sysconfig.get_paths()['stdlib'], '<python>/lib'), (str(Path.home()), '~')]
    return sorted({p: r for p, r in pairs if p and p != '/'}.items(), key=lambda pr: -len(pr[0]))


def scrub(text, paths):
    for path, instead in paths:
        text = text.replace(path, instead)
    return text


def answer_cell(release, p):
    """The answer cell a problem line is about: its own cell, or the last answer before its stage."""
    if p.get('cell') in release.solutions:
        return p['cell']
    stage = p.get('stage') or p.get('cell')
    before = release.order[:release.order.index(stage)] if stage in release.order else []
    return next((g for g in reversed(before) if g in release.solutions), None)


def write(folder, assignment, sid, name, nb, scores, problems, scrub_paths=()):
    """Feedback HTML in FOLDER/feedback/<sid>/<assignment>/ for notebook `name`, `nb` with the
    verdicts in it, showing the grader's `scores` and `problems`. None, or what went wrong."""
    from nbgrader.apps import NbGraderAPI
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(assignment.gradebook, folder / 'gradebook.db')
    paths = machine_paths(scrub_paths)
    mine, release = [p for p in problems if p.get('notebook') in (name, None)], assignment.notebooks[name]
    with Gradebook(f'sqlite:///{folder / "gradebook.db"}') as gb:
        gradebook.write(gb, assignment, dict(student=sid, scores=scores), [name])
        for gid in release.solutions:
            said = [scrub(p['text'], paths) for p in mine if answer_cell(release, p) == gid]
            gb.find_comment(gid, name, assignment.name, sid).manual_comment = '\n\n'.join(said) or None
        gb.db.commit()
    nb = copy.deepcopy(nb)  # no path of the grading machine in its outputs
    for o in (o for cell in nb.cells for o in cell.get('outputs', []) if o.get('output_type') == 'stream'):
        o['text'] = scrub(o.get('text', ''), paths)
    out = folder / 'autograded' / sid / assignment.name / f'{name}.ipynb'
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    config = kit_config(folder)
    config.CourseDirectory.notebook_id = name  # the pages written before stay as they are
    if not NbGraderAPI(config=config).generate_feedback(assignment.name, sid, force=True)['success']:
        return 'nbgrader could not write the feedback'
    page = folder / 'feedback' / sid / assignment.name / f'{name}.html'
    if page.exists():
        text = page.read_text().replace('</head>', STYLE + '</head>', 1)
        lines = [(f'{p["cell"]}: ' if p.get('cell') else '') + scrub(p['text'], paths) for p in mine]
        items = ''.join(f'<li>{html.escape(t)}</li>' for t in lines)
        box = f'<div class="grader-problems"><b>What the grader found:</b><ul>{items}</ul></div>' if items else ''
        page.write_text(scrub(text.replace('</h4>', '</h4>' + box, 1), paths))
    return None
