"""What the instructor reads: grades.csv, summary.png and the table of problems."""
import csv
import textwrap

COLUMNS = ('student', 'notebook', 'cell', 'score', 'problem')


def fmt(x):
    return f'{x:g}'


def write_csv(path, assignment, results):
    """One row per student: every graded cell, each notebook's total, the total. The first
    row holds the points each column is out of."""
    header, top = ['student'], ['(out of)']
    for name, nb in assignment.notebooks.items():
        for gid in nb.graded:
            header.append(f'{name}/{gid}')
            top.append(fmt(nb.points[gid]))
        header.append(name)
        top.append(fmt(nb.total))
    header.append('total')
    top.append(fmt(assignment.total))
    with open(path, 'w', newline='') as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerow(top)
        for r in sorted(results, key=lambda r: r['student']):
            row, total = [r['student']], 0.0
            for name, nb in assignment.notebooks.items():
                scores = r['scores'].get(name, {})
                row += [fmt(scores.get(gid, 0.0)) for gid in nb.graded]
                row.append(fmt(sum(scores.get(gid, 0.0) for gid in nb.graded)))
                total += sum(scores.get(gid, 0.0) for gid in nb.graded)
            out.writerow(row + [fmt(total)])


def score_of(problem, result, assignment):
    """The score a problem line reports: its graded cell's; '-' for a cell whose points no
    graded cell depends on (it cost nothing); its notebook's for the whole notebook; else the total."""
    name, stage = problem.get('notebook'), problem.get('stage')
    if name in assignment.notebooks:
        nb, scores = assignment.notebooks[name], result['scores'].get(name, {})
        if stage in nb.points:
            return f'{fmt(scores.get(stage, 0))}/{fmt(nb.points[stage])}'
        if problem.get('cell'):
            return '-'
        return f'{fmt(sum(scores.values()))}/{fmt(nb.total)}'
    total = sum(sum(s.values()) for s in result['scores'].values())
    return f'{fmt(total)}/{fmt(assignment.total)}'


def problem_rows(assignment, results):
    rows = []
    for r in sorted(results, key=lambda r: r['student']):
        for p in r['problems']:
            rows.append((r['student'], p.get('notebook') or '-', p.get('cell') or '-',
                         score_of(p, r, assignment), p['text']))
    return rows


def table(rows, width=200):
    """The rows as aligned text, one line each (long problems are cut with '...')."""
    if not rows:
        return 'no problems found\n'
    widths = [max(len(str(row[i])) for row in rows + [COLUMNS]) for i in range(4)]
    lines = []
    for row in [COLUMNS] + rows:
        head = '  '.join(str(v).ljust(w) for v, w in zip(row[:4], widths))
        room = max(width - len(head) - 2, 40)
        lines.append(f'{head}  {textwrap.shorten(str(row[4]), room, placeholder="...")}')
    return '\n'.join(lines) + '\n'


def write_problems(folder, rows):
    with open(folder / 'problems.csv', 'w', newline='') as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        out.writerows(rows)
    text = table(rows)
    (folder / 'problems.txt').write_text(text)
    return text


def plot(path, assignment, results):
    """For every graded cell, how many students got full, partial and no marks (the
    hardest step stands out), and the distribution of totals."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    stages = [(name, gid) for name, nb in assignment.notebooks.items() for gid in nb.graded]
    n = len(results)
    full, part, zero, mean = [], [], [], []
    for name, gid in stages:
        top = assignment.notebooks[name].points[gid]
        got = [r['scores'].get(name, {}).get(gid, 0.0) for r in results]
        full.append(sum(g >= top for g in got))
        zero.append(sum(g <= 0 for g in got))
        part.append(n - full[-1] - zero[-1])
        mean.append(sum(got) / top / max(n, 1))
    headings = [f'{name[:2]} {assignment.notebooks[name].labels[gid]}'.replace('`', '') for name, gid in stages]
    labels = [textwrap.fill(f'{h} ({gid})' if headings.count(h) > 1 else h, 44)  # whole, on up to 3 lines
              for h, (_, gid) in zip(headings, stages)]
    hardest = min(range(len(stages)), key=lambda i: mean[i]) if stages else None

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 1.6 + 0.6 * max(len(stages), 4)),
                                 gridspec_kw=dict(width_ratios=[2.2, 1]))
    y = list(range(len(stages)))[::-1]
    ax.barh(y, full, color='#3a923a', label='full marks')
    ax.barh(y, part, left=full, color='#e8b03c', label='partial')
    ax.barh(y, zero, left=[f + p for f, p in zip(full, part)], color='#c8453c', label='no marks')
    for i, (yi, m) in enumerate(zip(y, mean)):
        ax.text(n * 1.01, yi, f'{100 * m:.0f}%' + ('  hardest' if i == hardest else ''), va='center',
                fontsize=9, fontweight='bold' if i == hardest else 'normal')
    ax.set_yticks(y, labels, fontsize=9)
    if hardest is not None:
        ax.get_yticklabels()[hardest].set_fontweight('bold')
    ax.set_title('Students per graded step, and the mean score', fontsize=10, loc='left', pad=22)
    ax.set_xlim(0, n * 1.25 if n else 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= n])
    ax.set_xlabel(f'students (of {n})')
    ax.legend(loc='lower left', bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8, frameon=False)

    totals = [sum(sum(s.values()) for s in r['scores'].values()) for r in results]
    top = assignment.total
    whole = all(float(p).is_integer() for nb in assignment.notebooks.values() for p in nb.points.values())
    bins = [k - 0.5 for k in range(int(top) + 2)] if whole and top <= 40 else 10
    bx.hist(totals, bins=bins, color='#4a6fa5', edgecolor='white')
    bx.set_xlabel(f'total score (out of {fmt(top)})')
    bx.set_ylabel('students')
    bx.set_title('Total scores', fontsize=10, loc='left', pad=22)
    bx.xaxis.set_major_locator(MaxNLocator(integer=True))
    bx.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
