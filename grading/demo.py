"""A demo class made on the fly from the kit's notebooks, so that `make grade` with no
submissions shows the whole pipeline: one student per folder, as the instructor would
lay out a real class."""
import copy
import re
import shutil
import sys
from pathlib import Path

import nbformat

from grading.course import grade_id

STEPS = 2000  # BPN_STEPS for the demo class, unless set already

BESSEL = ('torch.ones_like(bndiff) / (n - 1) * dbnvar', 'torch.ones_like(bndiff) / n * dbnvar')
# typical slips: student: [(solution cell, text in the solution, what they wrote instead)]; the
# last three slip in several notebooks, so mistakes.png shows causes shared by several students
SLIPS = {
    'cy_bessel': [('stage3', *BESSEL)],
    'di_fanout': [('stage1', '    dcounts += dcounts_sum\n', '')],
    'ed_batch32': [('stage1', 'n = logprobs.shape[0]', 'n = 32')],
    'gus_sigma': [('stage3', *BESSEL),
                  ('step4', ' + dbnvar * 2 * bndiff / (n - 1)', ''),  # no sigma^2 path
                  ('step5', '    n = bnraw.shape[0]\n', '')],  # reads the notebook's n = 32
    'hal_alias': [('stage1', 'num_classes=logits.shape[1]', 'num_classes=27'),
                  ('stage3', 'dhprebn = dbndiff.clone()', 'dhprebn = dbndiff'),  # += on an alias
                  ('dlogits', 'dlogits = F.softmax(logits, 1)', 'dlogits = F.softmax(logits, 1).float()')],
    'ivy_float': [('dlogits', 'dlogits = F.softmax(logits, 1)', 'dlogits = F.softmax(logits, 1).float()'),
                  ('step4', 'dbnvar * 2 * bndiff / (n - 1)', 'dbnvar * 2 * bndiff / n'),  # Bessel
                  ('step5', '    n = bnraw.shape[0]\n', '')],
}


def strip_markers(source):
    """A solution cell as a student who got it right would hand it in."""
    return re.sub(r'^\s*### (BEGIN|END) SOLUTION\s*\n', '', source, flags=re.M)


def solved(nb):
    """The release of course.Notebook `nb` with every answer cell filled in from the solution."""
    out = copy.deepcopy(nb.release)
    answers = {grade_id(c): strip_markers(c.source) for c in nb.source.cells if grade_id(c) in nb.solutions}
    for cell in out.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return out


def build(folder, assignment):
    """Write the demo class into `folder` and return it."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    right = {f'{name}.ipynb': solved(nb) for name, nb in assignment.notebooks.items()}
    students = {'ada_solution': right,
                'ben_blank': {f'{name}.ipynb': copy.deepcopy(nb.release) for name, nb in assignment.notebooks.items()},
                'fay_renamed': {name.replace('.ipynb', '-Copy1.ipynb'): nb for name, nb in right.items()}}
    for student, edits in SLIPS.items():
        notebooks = copy.deepcopy(right)
        slipped = 0
        for gid, old, new in edits:
            cells = [c for nb in notebooks.values() for c in nb.cells if grade_id(c) == gid]
            if cells and old in cells[0].source:
                cells[0].source = cells[0].source.replace(old, new)
                slipped += 1
            elif cells:
                print(f'demo: {student} has no slip in {gid} (the solution has changed)', file=sys.stderr)
        if slipped:  # none when the notebooks graded hold none of their cells
            students[student] = notebooks
    for student, files in students.items():
        (folder / student).mkdir(parents=True)
        for filename, nb in files.items():
            nbformat.write(nb, folder / student / filename)
    return folder
