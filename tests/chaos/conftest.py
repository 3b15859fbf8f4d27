import pytest

from streams.projections import add, remove
from tests.chaos.helpers import CHAOS, ChaosWorkers, Slow, chaos_receiver
from tests.recovery.crash_helpers import clear_queues


@pytest.fixture
def chaos_workers(tmp_path, settings, fresh_projection_schemas):
    """Real workers (started by the test) that know the Slow projection; every process they started is
    killed at the end, and the queues are emptied before and after."""
    clear_queues()
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"
    add(Slow)
    logs = tmp_path / "logs"
    logs.mkdir()
    running = ChaosWorkers(logs, snapshot_dir=settings.REPLAYDESK_SNAPSHOT_DIR, apply_delay=0.08)
    yield running
    running.stop_all()
    remove(CHAOS)
    clear_queues()


@pytest.fixture
def receiver():
    running = chaos_receiver(answer_after=0.1)
    yield running
    running.stop()
