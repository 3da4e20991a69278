"""How gpumem paces Python's cyclic collector around the trees it parses.

libcst's tree of a statement is some thirty objects per line, kept while a file is analysed
(and, for the modules its imports read, for the next files). At the collector's usual pace the
middle and full collections walk all of them again and again, without ever freeing one.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager

FREEZE_SPAN = 50  # files between handing what `freezing` froze back to the collector
NEVER = 1 << 30  # a threshold no count reaches

_frozen_files = 0


@contextmanager
def slowed():
    """During an analysis: young collections at a tenth of their usual pace, middle and full ones
    not at all, so that an object is walked once at most while young (on 300 models of 60 layers
    the middle and full collections took 0.3-0.6 s of the plugin's 3-5). The caller's pace comes
    back after, also when what runs inside fails; its next collection then catches up."""
    pace = gc.get_threshold()
    gc.set_threshold(max(pace[0], 10 * 700), NEVER, NEVER)
    try:
        yield
    finally:
        gc.set_threshold(*pace)


@contextmanager
def freezing():
    """One file's analysis in the flake8 plugin; after it, its garbage is collected and what
    survives is frozen (gc.freeze).

    The library modules read through imports stay parsed for the next files (on torchvision's and
    timm's model files, 100,000 libcst nodes), and every full collection flake8's own work triggers
    would walk them again: 2.2 s of the plugin's 9 s there. Every FREEZE_SPAN files the frozen
    objects are handed back, so that garbage frozen with them (a host that runs flake8 in its own
    process, as an editor's language server may) is still reclaimed."""
    global _frozen_files
    try:
        yield
    finally:
        if _frozen_files >= FREEZE_SPAN:
            gc.unfreeze()
            _frozen_files = 0
        gc.collect()
        gc.freeze()
        _frozen_files += 1
