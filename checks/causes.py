"""The cause of a lost point as a short key, read from the sentence that explains it.

    cause_of("... 31/32 = (n-1)/n times PyTorch's: that is Bessel's correction ...")  # 'bessel'

The keys are what `make grade` counts across a class (mistakes.csv, mistakes.png). The
grader sets some keys itself where it knows them without reading a sentence (held,
autograd, timeout, memory, crashed, error); a line nothing recognises counts as 'other'.
tests/test_mistakes.py builds each classic mistake, has the checks judge it and asserts
its key, so a sentence reworded here or in checks/ cannot silently lose its key.
"""
import re

# What each key means, in a few words (the legend of mistakes.png): the design's table.
WORDS = {
    'not-written': 'not written yet', 'autograd': 'autograd computed it', 'held': 'held for review',
    'bessel': "1/n for 1/(n-1) (Bessel)", 'sigma-path': 'no sigma^2 path', 'global-n': "reads a notebook global",
    'hard-coded-size': 'a size typed in', 'alias': 'two gradients share memory', 'float32': 'a float32 cast',
    'missing-sum': 'a sum missing or misplaced', 'transposed': 'transposed', 'repeated-index': 'repeated index lost',
    'sign': 'sign flipped', 'factor': 'off by a factor', 'changed-input': 'changed an input in place',
    'lr-typed': 'learning rate typed in', 'loss-bar': 'loss above the bar', 'timeout': 'ran too long',
    'memory': 'out of memory', 'crashed': 'crashed', 'error': 'raised an exception',
    'missing': 'notebook missing', 'unreadable': 'not a readable notebook', 'other': 'no recognised cause',
}

# Causes a sentence names outright: the first key in this order wins, so the checks'
# "Likely cause: ..." beats the symptom it explains.
NAMED = [
    ('not-written', r'not written yet'),
    ('autograd', r'it calls autograd'),
    ('missing', r'\.ipynb is missing$'),
    ('unreadable', r'is an empty file|is not valid JSON|is not a text file|is JSON but not a Jupyter notebook'
                   r'|is not a notebook nbformat can read'),
    ('global-n', r"reads the notebook's globals?\b|batch size leaked"),
    ('alias', r'share their storage'),
    ('changed-input', r'changed its input'),
    ('float32', r'a float32 cast|came back as torch\.float(16|32)\b'),
    ('hard-coded-size', r'a size typed into the function|a hard-coded size'),
    ('lr-typed', r"this step's lr is"),
    ('loss-bar', r'above the bar'),
    ('bessel', r"Bessel|n/\(n-1\) times"),
    ('sigma-path', r'without the sigma\^2 path'),
    ('error', r'\bit raised\b'),
]
# What a wrong value looks like. The checks name the wrong gradients in backward order, the
# first one first, so the first sentence showing a symptom decides; a plain "differs ...
# Check the local derivative" decides too: no known cause (None).
LOOKS = [
    ('repeated-index', r'Whole rows are off'),
    ('transposed', r'is transposed|looks transposed'),
    ('missing-sum', r'sum over dim|keepdim=True|broadcast it out'),
    ('sign', r'a sign is flipped'),
    ('factor', r"times PyTorch's"),
    (None, r'Check the local derivative'),
]


def cause_of(text):
    """The key of the cause a problem sentence names, or None when it names none."""
    text = str(text or '')
    for key, pattern in NAMED:
        if re.search(pattern, text):
            return key
    for sentence in re.split(r'(?<=[.?!])\s+', text):
        for key, pattern in LOOKS:
            if re.search(pattern, sentence):
                return key
    return None
