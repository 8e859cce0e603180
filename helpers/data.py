"""The names: read them, number their characters, cut them into (context, next character)
examples, split them into train, val and test."""
import random
from pathlib import Path

import torch

NAMES_TXT = Path(__file__).resolve().parent.parent / 'data' / 'names.txt'


def read_words(path=NAMES_TXT):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f'names file not found: {path}. The kit ships data/names.txt; '
            'restore it with `git checkout data/names.txt` or rebuild it with '
            "`pip install -e '.[data]' && python data/build_names.py`.")
    return path.read_text().split()


def vocabulary(words):
    """stoi and itos for '.' (index 0, the start and end token) and the letters used."""
    chars = sorted(set(''.join(words)))
    stoi = {ch: i + 1 for i, ch in enumerate(chars)}
    stoi['.'] = 0
    itos = {i: ch for ch, i in stoi.items()}
    return stoi, itos


def build_dataset(words, stoi, block_size=3):
    """Every (context of block_size characters, next character) pair in the words."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + '.':
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


def split_dataset(words, stoi, block_size=3, seed=42):
    """Shuffle the words with `seed` and cut them 80/10/10 into train, val and test."""
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return (build_dataset(words[:n1], stoi, block_size),
            build_dataset(words[n1:n2], stoi, block_size),
            build_dataset(words[n2:], stoi, block_size))
