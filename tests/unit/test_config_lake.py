"""The LAKE_* settings: accepted forms and the errors for everything else."""

from __future__ import annotations

import pytest

from stellar_reconciler.config import Settings
from stellar_reconciler.errors import ConfigError


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("", ""),
        (
            "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet/",
            "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet",
        ),
        ("gs://bucket/prefix", "gs://bucket/prefix"),
        ("file:///srv/lake", "file:///srv/lake"),
    ],
)
def test_lake_url_forms_are_accepted(given: str, kept: str) -> None:
    """Empty (no lake), s3://, gs:// and absolute file:/// URLs are kept, without a final slash."""
    assert Settings.from_env(lake_url=given).lake_url == kept


@pytest.mark.parametrize(
    "given", ["https://bucket.s3.amazonaws.com/x", "s3:///no-bucket", "file://relative/dir", "lake"]
)
def test_other_lake_urls_are_refused_saying_what_to_write(given: str) -> None:
    """Any other LAKE_URL stops start-up with an error naming the variable and the forms."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(lake_url=given)
    assert caught.value.variable == "LAKE_URL"
    assert "s3://bucket/prefix" in str(caught.value)


def test_endpoint_prefetch_and_anonymous_are_checked() -> None:
    """LAKE_ENDPOINT_URL must be http(s), LAKE_PREFETCH 1-64; LAKE_ANONYMOUS reads true/false."""
    settings = Settings.from_env(
        lake_endpoint_url="http://127.0.0.1:9000", lake_prefetch="8", lake_anonymous="true"
    )
    assert (settings.lake_endpoint_url, settings.lake_prefetch, settings.lake_anonymous) == (
        "http://127.0.0.1:9000",
        8,
        True,
    )
    with pytest.raises(ConfigError, match="LAKE_ENDPOINT_URL"):
        Settings.from_env(lake_endpoint_url="127.0.0.1:9000")
    with pytest.raises(ConfigError, match="LAKE_PREFETCH"):
        Settings.from_env(lake_prefetch="0")
