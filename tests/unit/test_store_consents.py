"""Gap consents in the store: a consent names the gap it accepts, is refused without one,
is carried out once with the exact range, and can be revoked until then."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from stellar_reconciler.errors import GapConsentNotFoundError, GapConsentRefusedError
from stellar_reconciler.store import Store
from stellar_reconciler.store.migrate import MIGRATIONS
from tests.factories import make_batch


def stopped_at_gap(store: Store, first: int = 11, last: int = 40) -> None:
    """Ledgers 1..first-1 indexed; the worker then found first..last gone from the RPC."""
    store.ensure_stream(1, "fp")
    store.commit_batch(make_batch(1, first - 1))
    store.gaps.report_retention_gap(first, last, f"ledgers {first}-{last} are gone")


def test_consent_without_a_gap_is_refused_and_leaves_nothing(store: Store) -> None:
    """Synced (or empty) and asked twice to accept lost ledgers: refused both times, with a
    message that says why; no consent is stored to skip ledgers later."""
    with pytest.raises(GapConsentRefusedError, match="nothing is indexed yet"):
        store.consents.give(None, "just in case", "admin:ab")
    store.ensure_stream(1, "fp")
    store.commit_batch(make_batch(1, 30))
    for _ in range(2):
        with pytest.raises(GapConsentRefusedError, match="no retention gap is pending"):
            store.consents.give(None, "just in case", "admin:ab")
    with pytest.raises(GapConsentRefusedError, match="checkpoint 30"):
        store.consents.give(500, "just in case", "admin:ab")
    assert store.consents.listing() == []
    assert store.consents.pending() is None
    assert store.audit.listing() == []


def test_consent_names_the_pending_gap_and_a_second_is_refused(store: Store) -> None:
    """With the worker stopped at 11-40, a consent names ledger 11, shows what it will cover,
    and is audited with the caller's address; a second one for the same gap is refused."""
    stopped_at_gap(store)
    gap = store.gaps.pending_gap()
    assert gap is not None and (gap.first_ledger, gap.last_ledger) == (11, 40)
    consent = store.consents.give(None, "archive gone", "admin:ab", "127.0.0.9")
    assert consent["state"] == "pending" and consent["first_ledger"] == 11
    assert consent["through_oldest"] is True
    assert "from 11 up to the RPC's oldest" in consent["covers"]
    pending = store.consents.pending()
    assert pending is not None and (pending.id, pending.first_ledger) == (consent["id"], 11)
    with pytest.raises(GapConsentRefusedError, match=f"consent {consent['id']} already accepts"):
        store.consents.give(20, "again", "cli")
    [entry] = store.audit.listing()
    assert entry["action"] == "consent_to_gap" and entry["remote_addr"] == "127.0.0.9"
    assert entry["detail"]["first_ledger"] == 11


def test_a_limit_before_the_gap_is_refused(store: Store) -> None:
    """through_ledger must reach into the gap: one before its first ledger is refused."""
    stopped_at_gap(store)
    with pytest.raises(GapConsentRefusedError, match="at least 11"):
        store.consents.give(10, "typo", "cli")


def test_reported_gap_keeps_the_newest_end(store: Store) -> None:
    """The worker reports the gap each poll as the window slides: one open discrepancy whose
    end follows the window."""
    stopped_at_gap(store, 11, 40)
    assert store.gaps.report_retention_gap(11, 45, "ledgers 11-45 are gone") is False
    [open_gap] = store.discrepancies.listing("retention_gap", True)
    assert (open_gap["first_ledger"], open_gap["last_ledger"]) == (11, 45)


def test_carrying_out_records_the_exact_range_and_who_accepted_it(store: Store) -> None:
    """Carried out, a consent moves the checkpoint past exactly the range skipped, records
    it, is marked used with that range, and resolves the retention_gap with the exact bounds
    and "accepted by <who> at <when>"."""
    stopped_at_gap(store, 11, 40)
    consent = store.consents.give(None, "archive gone", "admin:ab")
    assert store.consents.carry_out(11, 52, consent["id"]) is not None
    assert store.checkpoint().ledger == 52
    assert [(g.first_ledger, g.last_ledger) for g in store.gaps.acknowledged()] == [(11, 52)]
    [resolved] = store.discrepancies.listing("retention_gap", False)
    assert (resolved["first_ledger"], resolved["last_ledger"]) == (11, 52)
    assert resolved["resolved_by"] == "admin:ab"
    assert resolved["resolution"].startswith(f"accepted by admin:ab at {consent['requested_at']}")
    [used] = store.consents.listing()
    assert used["state"] == "used"
    assert used["skipped"] == {"first_ledger": 11, "last_ledger": 52}
    assert store.consents.pending() is None and store.gaps.pending_gap() is None
    # Used once: carrying it out again changes nothing.
    assert store.consents.carry_out(53, 60, consent["id"]) is None
    assert store.checkpoint().ledger == 52


def test_a_consent_applies_only_to_the_gap_it_names(store: Store) -> None:
    """Carrying out a consent at another gap is refused; once the worker has moved past the
    gap a consent names, it is expired: visible, never carried out, still revocable."""
    stopped_at_gap(store, 11, 40)
    consent = store.consents.give(None, "archive gone", "admin:ab")
    assert store.consents.carry_out(12, 40, consent["id"]) is None
    assert store.checkpoint().ledger == 10
    # The RPC came back with the ledgers (an archive node): the worker indexed them.
    store.commit_batch(make_batch(11, 60))
    [expired] = store.consents.listing()
    assert expired["state"] == "expired"
    assert store.consents.pending() is None
    revoked = store.consents.revoke(consent["id"], "admin:cd", "127.0.0.9")
    assert revoked["state"] == "revoked" and revoked["revoked_by"] == "admin:cd"
    assert [e["action"] for e in store.audit.listing()] == ["revoke_gap_consent", "consent_to_gap"]


def test_revoke_rules(store: Store) -> None:
    """A pending consent can be revoked (then a new one may be given); a revoked or used one
    cannot, and an unknown id is named."""
    stopped_at_gap(store, 11, 40)
    first = store.consents.give(None, "archive gone", "admin:ab")
    store.consents.revoke(first["id"], "admin:ab")
    assert store.consents.pending() is None
    assert store.consents.carry_out(11, 40, first["id"]) is None
    with pytest.raises(GapConsentRefusedError, match="already revoked by admin:ab"):
        store.consents.revoke(first["id"], "admin:ab")
    second = store.consents.give(30, "only up to 30", "cli")
    assert store.consents.carry_out(11, 30, second["id"]) is not None
    with pytest.raises(GapConsentRefusedError, match="already carried out"):
        store.consents.revoke(second["id"], "admin:ab")
    with pytest.raises(GapConsentNotFoundError, match="no gap consent 999"):
        store.consents.revoke(999, "admin:ab")


def test_consents_from_before_the_upgrade_are_never_carried_out(store: Store) -> None:
    """Consents stored before gaps were named (the reported case left 190 of them) survive the
    upgrade as expired: listed, revocable, never carried out; a downgrade undoes the change."""
    stopped_at_gap(store, 11, 40)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = store.engine
    command.downgrade(config, "0003")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gap_consents (stream, through_ledger, note, requested_by, "
                "requested_at) VALUES (:stream, NULL, 'old', 'admin:ab', :at)"
            ),
            {"stream": store.stream, "at": datetime.now(UTC)},
        )
    store.migrate()
    [legacy] = store.consents.listing()
    assert legacy["state"] == "expired" and legacy["first_ledger"] is None
    assert "never carried out" in legacy["covers"]
    assert store.consents.pending() is None
    assert store.consents.carry_out(11, 40, legacy["id"]) is None
    assert store.consents.revoke(legacy["id"], "admin:ab")["state"] == "revoked"


def test_consent_errors_survive_pickling() -> None:
    """The consent errors cross process boundaries intact (type, fields and message)."""
    # Both pickles are made here from our own objects: nothing untrusted is loaded.
    refused = pickle.loads(pickle.dumps(GapConsentRefusedError("no gap")))  # noqa: S301
    assert isinstance(refused, GapConsentRefusedError) and str(refused) == "no gap"
    missing = pickle.loads(pickle.dumps(GapConsentNotFoundError(7)))  # noqa: S301
    assert missing.consent_id == 7 and "no gap consent 7" in str(missing)
