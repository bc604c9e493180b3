r"""What the symmetry-breaking study measures at the end of a run, beyond the validation loss.

* :func:`optimizer_state_bytes`: the bytes an optimiser keeps in its state (every tensor in
  ``optimizer.state``, including lists of tensors such as SOAP's Kronecker factors, and the
  optimiser-wide ``global_state`` of hamopt's optimisers); divided by the parameter count it is
  the memory cost per parameter (AdamW in float32: 8 bytes, two moments; SGD-momentum: 4).
* :func:`token_classes`: the byte classes of a Python source text (documented below), shared by
  the downstream checks and the head analysis (:mod:`hamopt.diagnostics.heads`).
* :func:`downstream_scores`: held-out checks on fixed test windows, in eval mode:

  - ``byte_accuracy``: top-1 next-byte accuracy over all positions;
  - ``bracket_accuracy``: at every position whose next byte closes a bracket (``)``, ``]``,
    ``}``), whether the model ranks the right closer above the other two; **balanced** over the
    three closers (the mean of the per-closer recalls), so always answering ``)`` scores 1/3;
  - ``keyword_completion``: for every Python keyword of two or more bytes that lies inside a
    window (not at its first position), whether greedy decoding from its first byte writes the
    rest of the keyword, i.e. every remaining byte is the model's top-1 prediction (teacher
    forcing gives the same answer as greedy decoding when all predictions are right).

Token classes (a byte may be in several; every class is a boolean mask over the bytes):

==============  ===========================================================================
``letter``      ``A–Z``, ``a–z``
``upper``       ``A–Z``
``digit``       ``0–9``
``space``       space and tab
``newline``     ``\n``
``bracket``     ``( ) [ ] { }``
``quote``       ``'`` and ``"``
``punctuation`` every other printable ASCII byte that is not a letter, digit, ``_`` or space
``keyword``     the bytes of a word (``[A-Za-z_][A-Za-z0-9_]*``) that is a Python keyword
                (``keyword.kwlist``), wherever it appears (code, comments or docstrings)
``identifier``  the bytes of every other such word
``comment``     from ``#`` to the end of its line (a ``#`` inside a string counts too)
==============  ===========================================================================
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CLOSERS",
    "TOKEN_CLASSES",
    "downstream_scores",
    "optimizer_state_bytes",
    "token_classes",
]

TOKEN_CLASSES = ("letter", "upper", "digit", "space", "newline", "bracket", "quote", "punctuation",
                 "keyword", "identifier", "comment")
CLOSERS = b")]}"
_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(rb"#[^\n]*")
_KEYWORDS = frozenset(k.encode() for k in keyword.kwlist)


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in tensors of the optimiser's per-parameter state and its ``global_state``."""
    total = sum(_tensor_bytes(s) for s in optimizer.state.values())
    glob = getattr(optimizer, "global_state", None)
    return total + (_tensor_bytes(dict(glob)) if isinstance(glob, dict) else 0)


def token_classes(data: bytes) -> dict[str, np.ndarray]:
    """The class masks of the bytes of ``data`` (see the module docstring), each of length
    ``len(data)``, in the order of :data:`TOKEN_CLASSES`."""
    a = np.frombuffer(bytes(data), dtype=np.uint8)
    upper = (a >= 65) & (a <= 90)
    lower = (a >= 97) & (a <= 122)
    digit = (a >= 48) & (a <= 57)
    space = (a == 32) | (a == 9)
    bracket = np.isin(a, np.frombuffer(b"()[]{}", dtype=np.uint8))
    quote = np.isin(a, np.frombuffer(b"'\"", dtype=np.uint8))
    printable = (a > 32) & (a < 127)
    punct = printable & ~upper & ~lower & ~digit & ~bracket & ~quote & (a != ord("_"))
    kw = np.zeros(len(a), bool)
    ident = np.zeros(len(a), bool)
    for m in _WORD.finditer(data):
        (kw if m.group() in _KEYWORDS else ident)[m.start():m.end()] = True
    comment = np.zeros(len(a), bool)
    for m in _COMMENT.finditer(data):
        comment[m.start():m.end()] = True
    masks = dict(letter=upper | lower, upper=upper, digit=digit, space=space, newline=a == 10,
                 bracket=bracket, quote=quote, punctuation=punct, keyword=kw, identifier=ident,
                 comment=comment)
    return {name: masks[name] for name in TOKEN_CLASSES}


def _keyword_spans(data: bytes) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(data)
            if m.group() in _KEYWORDS and m.end() - m.start() >= 2]


@torch.no_grad()
def downstream_scores(
    model: torch.nn.Module, windows: Sequence[tuple[Tensor, Tensor]], device: str = "cpu"
) -> dict[str, float | int]:
    """``byte_accuracy``, ``bracket_accuracy`` (balanced over ``) ] }``) and
    ``keyword_completion`` on fixed windows ``(x, y)`` (``y`` = ``x`` shifted by one byte), in
    eval mode; with the counts they rest on (``brackets``, ``keywords``)."""
    was = model.training
    model.eval()
    closer_ids = torch.tensor(list(CLOSERS))
    right, total = 0, 0
    closer_hits = {c: [0, 0] for c in CLOSERS}
    kw_done, kw_total = 0, 0
    for x, y in windows:
        logits, _ = model(x.to(device))
        pred = logits.argmax(-1).cpu()
        right += int((pred == y).sum())
        total += y.numel()
        closer_pred = closer_ids[logits[..., closer_ids].argmax(-1).cpu()]
        for c in CLOSERS:
            at = y == c
            closer_hits[c][0] += int((closer_pred[at] == c).sum())
            closer_hits[c][1] += int(at.sum())
        for row in range(x.shape[0]):
            window = bytes(torch.cat([x[row, :1], y[row]]).tolist())  # the context + 1 bytes
            hit = (pred[row] == y[row]).numpy()
            for start, end in _keyword_spans(window):
                if start < 1:
                    continue  # its first byte must be predicted from something
                kw_total += 1
                kw_done += bool(hit[start:end - 1].all())  # logit i predicts byte i + 1
    model.train(was)
    recalls = [h / n for h, n in closer_hits.values() if n]
    return {
        "byte_accuracy": right / total if total else float("nan"),
        "bracket_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "brackets": sum(n for _, n in closer_hits.values()),
        "keyword_completion": kw_done / kw_total if kw_total else float("nan"),
        "keywords": kw_total,
    }
