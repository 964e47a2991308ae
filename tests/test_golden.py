"""Golden outputs hold: every bundled scenario's ``--json``, a plan search, the calibration files'
predictions and the collectives comparison are bit-identical to ``tests/data/golden/`` (made by
``python tests/golden.py``). A change that moves numbers on purpose regenerates them in its own
commit; any other difference is a regression."""

from __future__ import annotations

import os
from pathlib import Path

import golden
import pytest

SHARED_FILES = (*golden.VALIDATION_FILES, golden.NCCL_FILE)


@pytest.mark.parametrize("name", sorted(golden.documents(Path("."))))
def test_output_is_bit_identical_to_the_golden_file(name, tmp_path):
    if not (name.startswith(("run-", "plan-")) or all(p.is_file() for p in SHARED_FILES)):
        if os.environ.get("CI"):
            pytest.fail("shared/ is missing beside the checkout: the golden comparison cannot run")
        pytest.skip("shared/ not beside the checkout")
    expected = (golden.GOLDEN / name).read_text()
    produced = golden.documents(tmp_path)[name]()
    assert produced == expected, f"{name} changed; if on purpose, run `python tests/golden.py` in its own commit"
