"""What the instructor reads: grades.csv, summary.png, the table of problems, and what the
class got wrong (mistakes.csv, mistakes.png)."""
import csv
import textwrap

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from checks.causes import WORDS, cause_of

# the cause last, so that readers of the older columns keep them
COLUMNS = ('student', 'notebook', 'cell', 'score', 'problem', 'cause')
WHOLE = '(notebook)'  # the graded cell of a line about a whole notebook
WHOLE_CAUSES = {'held', 'missing', 'unreadable'}  # they cost a notebook every point, whatever cell they name
LAST = {'not-written', 'other'}  # after the slips that cost as many students


def fmt(x):
    return f'{x:g}'


def by_student(results):
    return sorted(results, key=lambda r: r['student'])


def total(result):
    return sum(sum(s.values()) for s in result['scores'].values())


def write_rows(path, rows):
    with open(path, 'w', newline='') as f:
        csv.writer(f).writerows(rows)


def write_csv(path, assignment, results):
    """One row per student: every graded cell, each notebook's total, the total, the notebooks
    held for review. The first row under the header holds the points each column is out of."""
    header, top = ['student'], ['(out of)']
    for name, nb in assignment.notebooks.items():
        header += [f'{name}/{gid}' for gid in nb.graded] + [name]
        top += [fmt(nb.points[gid]) for gid in nb.graded] + [fmt(nb.total)]
    rows = [header + ['total', 'review'], top + [fmt(assignment.total), '']]
    for r in by_student(results):
        row = [r['student']]
        for name, nb in assignment.notebooks.items():
            scores = [r['scores'].get(name, {}).get(gid, 0.0) for gid in nb.graded]
            row += [fmt(s) for s in scores] + [fmt(sum(scores))]
        rows.append(row + [fmt(total(r)), ' '.join(r.get('held') or [])])
    write_rows(path, rows)


def score_of(problem, result, assignment):
    """The score a problem line reports: its graded cell's; '-' for a cell whose points no
    graded cell depends on (it cost nothing); its notebook's for the whole notebook; else the total."""
    name, stage = problem.get('notebook'), problem.get('stage')
    if name not in assignment.notebooks:
        return f'{fmt(total(result))}/{fmt(assignment.total)}'
    nb, scores = assignment.notebooks[name], result['scores'].get(name, {})
    if stage in nb.points:
        return f'{fmt(scores.get(stage, 0))}/{fmt(nb.points[stage])}'
    return '-' if problem.get('cell') else f'{fmt(sum(scores.values()))}/{fmt(nb.total)}'


def problem_rows(assignment, results):
    return [(r['student'], p.get('notebook') or '-', p.get('cell') or '-', score_of(p, r, assignment), p['text'],
             cause(p)) for r in by_student(results) for p in r['problems']]


def cause(problem):
    """A problem line's cause: the one the grader set, else the one its sentence names, else 'other'."""
    return problem.get('cause') or cause_of(problem.get('text')) or 'other'


def table(rows, width=200):
    """The rows as aligned text, one line each, the problem last (long ones are cut with '...')."""
    if not rows:
        return 'no problems found\n'
    shown = [(*row[:4], row[5], row[4]) for row in [COLUMNS] + rows]
    widths = [max(len(str(row[i])) for row in shown) for i in range(5)]
    lines = []
    for row in shown:
        head = '  '.join(str(v).ljust(w) for v, w in zip(row[:-1], widths))
        room = max(width - len(head) - 2, 40)
        lines.append(f'{head}  {textwrap.shorten(str(row[-1]), room, placeholder="...")}')
    return '\n'.join(lines) + '\n'


def write_problems(folder, rows):
    write_rows(folder / 'problems.csv', [COLUMNS, *rows])
    (folder / 'problems.txt').write_text(table(rows))
    return table(rows)


def plot(path, assignment, results):
    """For every graded cell, how many students got full, partial and no marks (the
    hardest step stands out), and the distribution of totals."""
    stages = [(name, gid) for name, nb in assignment.notebooks.items() for gid in nb.graded]
    n = len(results)
    got = [[r['scores'].get(name, {}).get(gid, 0.0) / assignment.notebooks[name].points[gid] for r in results]
           for name, gid in stages]  # each student's share of each graded cell's points
    full = [sum(g >= 1 for g in row) for row in got]
    zero = [sum(g <= 0 for g in row) for row in got]
    mean = [sum(row) / max(n, 1) for row in got]
    headings = [f'{name[:2]} {assignment.notebooks[name].labels[gid]}'.replace('`', '') for name, gid in stages]
    labels = [textwrap.fill(f'{h} ({gid})' if headings.count(h) > 1 else h, 44)  # whole, on up to 3 lines
              for h, (_, gid) in zip(headings, stages)]
    hardest = min(range(len(stages)), key=mean.__getitem__, default=None)

    fig = Figure(figsize=(13, 1.6 + 0.6 * max(len(stages), 4)))
    ax, bx = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[2.2, 1]))
    y = list(range(len(stages)))[::-1]
    ax.barh(y, full, color='#3a923a', label='full marks')
    ax.barh(y, [n - f - z for f, z in zip(full, zero)], left=full, color='#e8b03c', label='partial')
    ax.barh(y, zero, left=[n - z for z in zero], color='#c8453c', label='no marks')
    for i, (yi, m) in enumerate(zip(y, mean)):
        ax.text(n * 1.01, yi, f'{100 * m:.0f}%' + ('  hardest' if i == hardest else ''), va='center',
                fontsize=9, fontweight='bold' if i == hardest else 'normal')
    ax.set_yticks(y, labels, fontsize=9)
    if hardest is not None:
        ax.get_yticklabels()[hardest].set_fontweight('bold')
    ax.set_title('Students per graded step, and the mean score', fontsize=10, loc='left', pad=22)
    ax.set(xlim=(0, n * 1.25 if n else 1), xlabel=f'students (of {n})')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= n])
    ax.legend(loc='lower left', bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8, frameon=False)

    top = assignment.total
    whole = all(float(p).is_integer() for nb in assignment.notebooks.values() for p in nb.points.values())
    bx.hist([total(r) for r in results], bins=[k - 0.5 for k in range(int(top) + 2)] if whole and top <= 40 else 10,
            color='#4a6fa5', edgecolor='white')
    bx.set(xlabel=f'total score (out of {fmt(top)})', ylabel='students')
    bx.set_title('Total scores', fontsize=10, loc='left', pad=22)
    bx.xaxis.set_major_locator(MaxNLocator(integer=True))
    bx.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- what the class got wrong

def mistakes(assignment, results):
    """[(notebook, graded cell, cause, [students])]: for each graded cell, the causes ranked by
    how many students they cost points there (ties: slips before not-written and other; 'other'
    only when no recognised cause names the cell). A notebook held, missing or unreadable counts
    once, under '(notebook)', and nothing else in it does; a line with a recognised cause about
    a whole notebook that lost points counts there too. Notes that cost nothing never count."""
    found = {}  # (notebook, cell): {cause: [students]}
    for r in by_student(results):
        whole = whole_losses(assignment, r)
        units = {(name, WHOLE): causes for name, causes in whole.items()}  # (notebook, cell): {causes}
        for p in r['problems']:
            name, stage, why = p.get('notebook'), p.get('stage'), cause(p)
            nb = assignment.notebooks.get(name)
            if nb is None or name in whole:
                continue
            scores = r['scores'].get(name, {})
            if stage in nb.points:
                if scores.get(stage, 0) < nb.points[stage]:
                    units.setdefault((name, stage), set()).add(why)
            elif not p.get('cell') and why not in WHOLE_CAUSES | {'other'} and sum(scores.values()) < nb.total:
                units.setdefault((name, WHOLE), set()).add(why)
        for unit, causes in units.items():
            for why in causes - {'other'} or causes:
                found.setdefault(unit, {}).setdefault(why, []).append(r['student'])
    order = [(name, cell) for name, nb in assignment.notebooks.items() for cell in [WHOLE] + nb.graded]
    return [(name, cell, why, students) for name, cell in order if (name, cell) in found
            for why, students in sorted(found[name, cell].items(), key=lambda kv: (-len(kv[1]), kv[0] in LAST, kv[0]))]


def whole_losses(assignment, result):
    """{notebook: {causes}} for the notebooks that scored nothing because they were held
    (result['held']: the hold's own causes, held or autograd), missing or unreadable."""
    held = set(result.get('held') or [])
    out = {name: set() for name in held}
    for p in result['problems']:
        name, why = p.get('notebook'), cause(p)
        if name in assignment.notebooks and (why in WHOLE_CAUSES or name in held and why == 'autograd') \
                and not any(result['scores'].get(name, {}).values()):
            out.setdefault(name, set()).add(why)
    return {name: causes or {'held'} for name, causes in out.items()}


def most_common(rows, k=3):
    """'most common: bessel 31 students (01_atomic_backprop/test_stage3), ...', or ''."""
    top = sorted(rows, key=lambda row: (-len(row[3]), row[2] in LAST))[:k]
    said = [f'{why} {len(who)} student{"s" if len(who) > 1 else ""} ({name}/{cell})' for name, cell, why, who in top]
    return 'most common: ' + ', '.join(said) + '\n' if said else ''


def write_mistakes(folder, assignment, results):
    """mistakes.csv and mistakes.png in `folder`; the most-common line for the end of make grade."""
    rows = mistakes(assignment, results)
    write_rows(folder / 'mistakes.csv', [('notebook', 'graded cell', 'cause', 'students', 'which students')] +
               [(name, cell, why, len(who), ' '.join(who)) for name, cell, why, who in rows])
    plot_mistakes(folder / 'mistakes.png', assignment, rows, len(results))
    return most_common(rows)


def plot_mistakes(path, assignment, rows, n):
    """One group of bars per graded cell that cost anyone points: its causes, ranked by how
    many students each cost points there, each cause in its own colour throughout."""
    plain = {'other': '#9a9a9a', 'not-written': '#c8c8c8', 'held': '#8b1a1a', 'autograd': '#8b1a1a'}
    slips = [k for k in WORDS if k not in plain]  # 19 keys, a colour of tab20 each
    colour = {k: colormaps['tab20'](i % 20) for i, k in enumerate(slips)} | plain
    groups = list(dict.fromkeys((name, cell) for name, cell, _, _ in rows))
    fig = Figure(figsize=(9, 1.2 + 0.22 * len(rows) + 0.3 * len(groups)))
    ax = fig.subplots()
    y, ticks, labels = 0, [], []
    for name, cell in groups:
        heading = textwrap.shorten(assignment.notebooks[name].labels[cell].replace('`', ''), 60, placeholder='...') \
            if cell != WHOLE else ''
        ax.text(0, y, f'{name[:2]} {heading}  ({cell})' if heading else f'{name}: the whole notebook',
                fontsize=9, fontweight='bold', va='center')
        y -= 1
        for _, _, why, who in (row for row in rows if row[:2] == (name, cell)):
            ax.barh(y, len(who), height=0.7, color=colour.get(why, '#9a9a9a'))
            ax.text(len(who) + n * 0.01, y, str(len(who)), va='center', fontsize=8)
            ticks.append(y)
            labels.append(f'{why}: {WORDS.get(why, "")}' if why in WORDS else why)
            y -= 1
        y -= 0.4
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set(ylim=(y + 0.6, 0.8), xlim=(0, max(n, 1) * 1.08), xlabel=f'students who lost points to it (of {n})')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title('What the class got wrong: for each graded step, the causes of lost points', fontsize=10, loc='left')
    ax.spines[['top', 'right']].set_visible(False)
    if not rows:
        ax.text(0.5, 0.5, 'no points lost', transform=ax.transAxes, ha='center', fontsize=11)
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
