"""CatchUp: catch-up figures (done, remaining, rates, ETA) and when they are logged."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.progress import CatchUp


def test_following_the_tip_reports_nothing() -> None:
    """Batches that leave at most two ledgers to go are following, not catching up."""
    catch_up = CatchUp()
    assert catch_up.committed(0.0, 100, 1, 5, latest_ledger=101) is None
    assert catch_up.committed(1.0, 101, 1, 5, latest_ledger=103) is None
    assert catch_up.current is None


def test_start_is_logged_at_once_then_every_interval() -> None:
    """The first batch of a backlog logs a line; later ones only once log_every has passed."""
    catch_up = CatchUp(log_every=10.0)
    first = catch_up.committed(0.0, 1_099, 100, 1_000, latest_ledger=2_000)
    assert first is not None
    assert first["done"] == 100 and first["remaining"] == 901 and first["finished"] is False
    assert first["ledgers_per_s"] is None and first["eta_s"] is None
    logged = [
        catch_up.committed(float(second), 1_099 + 10 * second, 10, 100, latest_ledger=2_000)
        for second in range(1, 25)
    ]
    assert [i + 1 for i, line in enumerate(logged) if line is not None] == [10, 20]


def test_rates_and_eta_follow_the_batches() -> None:
    """100 ledgers and 2,000 events a second with 500 ledgers to go: an ETA of 5 s."""
    catch_up = CatchUp()
    catch_up.committed(0.0, 1_100, 100, 2_000, latest_ledger=2_000)
    catch_up.committed(1.0, 1_200, 100, 2_000, latest_ledger=2_000)
    catch_up.committed(2.0, 1_500, 300, 6_000, latest_ledger=2_000)
    progress = catch_up.current
    assert progress is not None
    assert progress.ledgers_per_second == 200.0
    assert progress.events_per_second == 4_000.0
    assert progress.eta_seconds == 2.5
    assert progress.first_ledger == 1_001
    assert progress.done_ledgers == 500 and progress.remaining_ledgers == 500
    assert progress.fraction == 0.5
    assert progress.as_json()["fraction"] == 0.5


def test_rates_forget_batches_older_than_the_window() -> None:
    """A catch-up that slowed down shows its recent rate, not its average since the start."""
    catch_up = CatchUp(window=10.0)
    catch_up.committed(0.0, 1_000, 1_000, 0, latest_ledger=100_000)
    catch_up.committed(1.0, 2_000, 1_000, 0, latest_ledger=100_000)
    for second in range(2, 40):
        catch_up.committed(float(second), 2_000 + 10 * (second - 1), 10, 0, latest_ledger=100_000)
    progress = catch_up.current
    assert progress is not None
    assert progress.ledgers_per_second == 10.0


def test_reaching_the_tip_logs_once_and_ends_the_catch_up() -> None:
    """The batch that reaches the tip logs a finished line; the next backlog starts afresh."""
    catch_up = CatchUp()
    catch_up.committed(0.0, 1_500, 500, 10, latest_ledger=2_000)
    last = catch_up.committed(5.0, 2_000, 500, 10, latest_ledger=2_001)
    assert last is not None and last["finished"] is True and last["eta_s"] is None
    assert last["done"] == 1_000 and last["percent"] == 99.9
    assert catch_up.current is None
    again = catch_up.committed(100.0, 2_100, 99, 1, latest_ledger=3_000)
    assert again is not None and again["done"] == 99 and again["elapsed_s"] == 0.0


@given(
    st.lists(
        st.tuples(st.floats(0.01, 30.0), st.integers(1, 500), st.integers(0, 10_000)),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 20_000),
)
def test_figures_stay_consistent(batches: list[tuple[float, int, int]], extra: int) -> None:
    """Whatever the batches, done counts every ledger, nothing is negative, and lines are
    logged at most once per interval (plus the start and the finish)."""
    total = sum(ledgers for _, ledgers, _ in batches)
    latest = 1_000 + total + extra
    catch_up = CatchUp(log_every=10.0)
    now, last, lines = 0.0, 1_000, []
    for gap, ledgers, events in batches:
        now, last = now + gap, last + ledgers
        line = catch_up.committed(now, last, ledgers, events, latest)
        if line is not None:
            lines.append((now, line))
        progress = catch_up.current
        if progress is not None:
            assert progress.done_ledgers == last - progress.first_ledger + 1
            assert progress.remaining_ledgers == latest - last
            assert 0.0 <= progress.fraction <= 1.0
            for rate in (progress.ledgers_per_second, progress.events_per_second):
                assert rate is None or rate >= 0
    running = [t for t, line in lines if not line["finished"]]
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(running))
    assert sum(1 for _, line in lines if line["finished"]) <= 1
