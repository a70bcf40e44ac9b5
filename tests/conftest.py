"""Shared test setup: never touch the user's cache, never open a plot window."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory):
    # session scope, so module-scoped fixtures (and the subprocesses they start) see it too
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_SEARCH_CACHE", str(tmp_path_factory.mktemp("fer-search-cache")))
        patch.setenv("MPLBACKEND", "Agg")
        yield
