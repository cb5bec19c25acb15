"""A short chaos run in every `make test`; `make chaos` runs the full one (5,000 leads, 50 agents)."""

from __future__ import annotations

import os
import shutil

import pytest
from chaos import ROOT, ChaosConfig, run_chaos

pytestmark = pytest.mark.integration


def test_the_books_balance_under_fire() -> None:
    # Under var/, not pytest's 0700 tmp dirs: the embedded server runs as its own system user.
    work = ROOT / "var" / f"chaos-test-{os.getpid()}"
    report = run_chaos(ChaosConfig(leads=240, agents=16, workers=3, max_cps=20, timeout=600), work)
    print("\n".join(report.events))
    print(report.table())
    assert report.ok, f"\n{report.table()}\nlogs in {report.log_dir}"
    shutil.rmtree(work, ignore_errors=True)
