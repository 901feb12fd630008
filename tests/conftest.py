import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
SEED = 20240521  # every test starts from this seed in random, numpy and torch


def in_ci() -> bool:
    """True on a CI machine (the ``CI`` variable set to anything but empty, 0, false, no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# Hypothesis: in CI a fixed, derandomised set of examples (a red CI run is red again on a
# re-run, and prints the failing example); locally fresh random examples each run, so
# more of the space gets explored over time.  Tests may lower max_examples themselves.
settings.register_profile("ci", derandomize=True, max_examples=50, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    # pytest-randomly (off by default, on with -p randomly) shuffles the test order and would
    # also reseed random and numpy before each test from its own per-run seed; the fixture
    # below seeds every test from SEED instead, so a shuffled run changes the order only
    if config.pluginmanager.hasplugin("randomly"):
        config.option.randomly_reset_seed = False


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed the global generators before every test, so a test that draws from them
    (model initialisation, ``torch.randn`` without a generator) sees the same numbers
    whatever ran before it and in whatever order."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    yield


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database for the tests: ``ARCHBENCH_TEST_POSTGRES_URL`` when set, else a
    throwaway server started for this session (see ``tests/pg.py``) and removed at its end.
    Without PostgreSQL installed the test fails in CI and is skipped elsewhere."""
    url = os.environ.get("ARCHBENCH_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    from tests.pg import NoPostgres, throwaway_server

    server = throwaway_server()
    try:
        url = server.__enter__()
    except NoPostgres as e:
        no_postgres(str(e))
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def fresh_postgres_url(postgres_url):
    """A new, empty database on the session's PostgreSQL server for this test alone, dropped
    (with any connection a killed process left behind) when the test ends."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"archbench_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE refuses a transaction
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def no_postgres(reason: str) -> None:
    """PostgreSQL is not installed: a failure in CI (which installs it), else a skip."""
    if in_ci():
        pytest.fail(f"CI must run the PostgreSQL tests: {reason}", pytrace=False)
    pytest.skip(reason)


def tiny_run(**over):
    """A run config dict that trains in about a second."""
    cfg = {
        "arch": {"name": "transformer", "d_model": 32, "n_layers": 1, "n_heads": 2},
        "task": {"name": "mqar", "params": {"vocab_size": 64, "seq_len": 32, "num_pairs": 4,
                                            "n_train": 256, "n_val": 64, "n_test": 64}},
        "train": {"steps": 20, "batch_size": 32, "eval_every": 10},
        "optimizer": {"lr": 3e-3, "warmup_steps": 2},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running the CLI in a subprocess inside tmp_path."""
    env = dict(os.environ)
    env.pop("ARCHBENCH_DB", None)
    if env.get("MUTANT_UNDER_TEST") == "stats":
        # mutmut's coverage pass records calls in its own process only, and needs its config
        # (pyproject.toml in the cwd) to do so; a CLI subprocess in tmp_path runs unrecorded
        env.pop("MUTANT_UNDER_TEST")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


ARCHBENCH = [sys.executable, "-m", "harness"]
