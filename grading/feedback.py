"""The student's feedback pages, rendered with nbgrader's feedback template from the grader's
scores and the notebook as handed in (repaired: the test cells are the release's, so the
hidden tests stay hidden), each graded test cell showing the grader's verdict. Every problem
line reaches the page, at the top and as the comment of the answer cell it is about; no file
path of the grading machine is left in it; the student's own markdown shows as its text, so
no tag or link of theirs is live (an instructor opens the pages too); long lines wrap and markdown tables have borders.
"""
import copy
import functools
import html
import re
import sys
import sysconfig
from pathlib import Path

import nbformat
import nbgrader

from grading.course import ROOT, grade_id

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


def as_text(markdown):
    """Markdown that the page shows as its own text, in a fence longer than any run of backticks in it."""
    fence = '`' * max(3, 1 + max(map(len, re.findall('`+', markdown)), default=0))
    return f'{fence}\n{markdown}\n{fence}'


def inert(text):
    """Text that markdown shows as it is, with no tag or link in it: < and & escaped, brackets too."""
    return html.escape(text, quote=False).replace('[', '\\[').replace(']', '\\]')


@functools.cache
def exporter():
    """nbconvert's HTML exporter with nbgrader's feedback template, made once per process."""
    from nbconvert import HTMLExporter
    formgrader = Path(nbgrader.__file__).parent / 'server_extensions' / 'formgrader'
    return HTMLExporter(template_name='feedback', extra_template_basedirs=[str(formgrader / 'templates')],
                        extra_template_paths=[str(formgrader / 'static/node_modules/bootstrap/dist/css')],
                        preprocessors=['nbconvert.preprocessors.CSSHTMLHeaderPreprocessor'])


def write(course, assignment, sid, name, nb, verdicts, scores, problems, scrub_paths=()):
    """COURSE/autograded/<sid>/<assignment>/<name>.ipynb: `nb` as handed in, each graded cell's
    output its verdict ({grade id: Verdict}); and that notebook on nbgrader's feedback page,
    COURSE/feedback/.../<name>.html, with each graded cell's score and each answer's problem lines."""
    paths, release = machine_paths(scrub_paths), assignment.notebooks[name]
    mine = [p for p in problems if p.get('notebook') in (name, None)]
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        gid = grade_id(cell)
        if cell.cell_type == 'code':
            cell.outputs, cell.execution_count = [], None
        if gid in release.points:
            said = 'not graded' if gid not in verdicts else verdicts[gid].text or 'right'
            text = f'[grader] {scores.get(gid, 0):g} of {release.points[gid]:g} points: {scrub(said, paths)}\n'
            cell.outputs = [nbformat.v4.new_output('stream', name='stdout', text=text)]
    autograded = course / 'autograded' / sid / assignment.name / f'{name}.ipynb'
    autograded.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, autograded)
    for cell in nb.cells:  # what nbgrader's GetGrades would take from a gradebook
        meta, gid = cell.metadata.get('nbgrader', {}), grade_id(cell)
        if cell.cell_type == 'markdown' and cell.source.strip() not in release.kit_sources:
            cell.source = as_text(cell.source)  # a student's own markdown: no tag or link of theirs on the page
        if meta.get('solution'):  # an error's message is the student's to write
            said = [inert(scrub(p['text'], paths)) for p in mine if answer_cell(release, p) == gid]
            meta['comment'] = '\n\n'.join(said)
        if gid in release.points:
            meta['score'], meta['points'] = scores.get(gid, 0.0), release.points[gid]
    total = dict(notebook=name, score=sum(scores.get(g, 0.0) for g in release.points), max_score=release.total,
                 late_penalty=0)
    text, _ = exporter().from_notebook_node(nb, resources=dict(nbgrader=total))
    lines = [(f'{p["cell"]}: ' if p.get('cell') else '') + scrub(p['text'], paths) for p in mine]
    items = ''.join(f'<li>{html.escape(t)}</li>' for t in lines)
    box = f'<div class="grader-problems"><b>What the grader found:</b><ul>{items}</ul></div>' if items else ''
    page = course / 'feedback' / sid / assignment.name / f'{name}.html'
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(scrub(text.replace('</head>', STYLE + '</head>', 1).replace('</h4>', '</h4>' + box, 1), paths))
