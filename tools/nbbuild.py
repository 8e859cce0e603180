"""Build the nbgrader source notebooks in solutions/ from their text sources in nbsrc/.

A source is a Python file cut into cells by marker lines:
    # %% [markdown]                a markdown cell; its lines lose their leading '# '
    # %%                           a plain code cell
    # %% locked id=NAME            a read-only code cell (nbgrader restores it when grading)
    # %% solution id=NAME          the student's answer cell (### BEGIN/END SOLUTION inside)
    # %% tests id=NAME points=N    a graded test cell (### BEGIN/END HIDDEN TESTS inside)
    # %% [markdown] locked id=NAME a read-only markdown cell

    python tools/nbbuild.py [--execute] [names...]
--execute runs each built notebook with nbclient and keeps its outputs, so solutions/
reads on its own. Environment variables reach the kernel (BPN_STEPS for notebook 4).
"""
import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / 'nbsrc'
OUT = ROOT / 'solutions' / 'backprop_ninja'
MARKER = re.compile(r'^# %%(?: \[(markdown)\])?(.*)$')


def nbgrader_meta(kind, opts):
    meta = dict(schema_version=3, grade_id=opts['id'], locked=True, solution=False,
                grade=False, task=False)
    if kind == 'solution':
        meta.update(locked=False, solution=True)
    elif kind == 'tests':
        meta.update(grade=True, points=int(opts['points']))
    return meta


def parse(text):
    """[(cell_type, words after the marker, source)] from a source file."""
    cells, cur = [], None
    for line in text.splitlines():
        m = MARKER.match(line)
        if m:
            cur = ['markdown' if m.group(1) else 'code', m.group(2).split(), []]
            cells.append(cur)
        elif cur is not None:
            cur[2].append(line)
    out = []
    for cell_type, words, lines in cells:
        if cell_type == 'markdown':
            lines = [re.sub(r'^# ?', '', ln) for ln in lines]
        out.append((cell_type, words, '\n'.join(lines).strip('\n')))
    return out


def build(src):
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = dict(name='python3', display_name='Python 3 (ipykernel)', language='python')
    nb.metadata.language_info = dict(name='python')
    ids = set()
    for i, (cell_type, words, source) in enumerate(parse(src.read_text())):
        kind = next((w for w in words if '=' not in w), None)
        opts = dict(w.split('=', 1) for w in words if '=' in w)
        make = nbformat.v4.new_markdown_cell if cell_type == 'markdown' else nbformat.v4.new_code_cell
        cell = make(source)
        cell.id = opts.get('id', f'{src.stem[:2]}-cell-{i:02d}')
        if cell.id in ids:
            sys.exit(f'{src.name}: the id {cell.id} is used twice')
        ids.add(cell.id)
        if kind is not None:
            if 'id' not in opts:
                sys.exit(f'{src.name}: cell {i} is {kind} but has no id=')
            cell.metadata.nbgrader = nbgrader_meta(kind, opts)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def execute(nb, cwd):
    from nbclient import NotebookClient
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor
    NotebookClient(nb, timeout=1800, kernel_name='python3', record_timing=False, resources={'metadata': {'path': str(cwd)}}).execute()
    CoalesceStreamsPreprocessor().preprocess(nb, {})  # one output per stream; a progress bar keeps its last line


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--execute', action='store_true')
    ap.add_argument('names', nargs='*', help='source stems, e.g. 01_atomic_backprop (default: all)')
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for src in sorted(SRC.glob('*.py')):
        if args.names and src.stem not in args.names:
            continue
        nb = build(src)
        if args.execute:
            print(f'executing {src.stem} ...', flush=True)
            execute(nb, OUT)
        nbformat.write(nb, OUT / f'{src.stem}.ipynb')
        print(f'wrote {OUT.relative_to(ROOT)}/{src.stem}.ipynb')


if __name__ == '__main__':
    main()
