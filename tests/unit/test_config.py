"""Settings: defaults, parsing, and one clear error per bad value."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from stellar_reconciler.config import (
    TESTNET_RPC_URL,
    Settings,
    Shown,
    env_file_warnings,
    settings_about,
)
from stellar_reconciler.errors import ConfigError

SAC = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"
TRANSFER_XDR = "AAAADwAAAAh0cmFuc2Zlcg=="


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run each test with none of the service's variables set and no .env file around."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_match_the_documented_ones() -> None:
    """With nothing set, the defaults are the documented ones."""
    settings = Settings.from_env()
    assert settings.bind_addr == "127.0.0.1:3000"
    assert settings.database_url == "sqlite:///./reconciler.db"
    assert settings.stellar_rpc_url == TESTNET_RPC_URL
    assert settings.rpc_max_attempts == 5
    assert settings.rpc_initial_backoff_ms == 250
    assert settings.rpc_max_backoff_secs == 5
    assert settings.start_ledger == "oldest"
    assert settings.contract_ids == ()
    assert settings.event_topics == ()


def test_environment_and_dotenv_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Variables come from the environment, and from .env in the working directory."""
    (tmp_path / ".env").write_text("SERVICE_NAME=from-dotenv\nPOLL_INTERVAL_SECS=2.5\n")
    monkeypatch.setenv("START_LEDGER", "12345")
    settings = Settings.from_env()
    assert settings.service_name == "from-dotenv"
    assert settings.poll_interval_secs == 2.5
    assert settings.start_ledger == "12345"


def test_contract_ids_and_topics_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """CONTRACT_IDS splits on commas; EVENT_TOPICS turns symbol names into base64 ScVals."""
    monkeypatch.setenv("CONTRACT_IDS", f" {SAC} , {SAC} ")
    monkeypatch.setenv("EVENT_TOPICS", f"transfer,*,*,**; {TRANSFER_XDR}")
    settings = Settings.from_env()
    assert settings.contract_ids == (SAC,)
    assert settings.event_topics == ((TRANSFER_XDR, "*", "*", "**"), (TRANSFER_XDR,))


def test_postgres_urls_get_the_psycopg_driver() -> None:
    """postgresql:// and postgres:// both become postgresql+psycopg:// for SQLAlchemy."""
    for url in ("postgresql://u@h:5432/db", "postgres://u@h:5432/db"):
        assert (
            Settings.from_env(database_url=url).sqlalchemy_url == "postgresql+psycopg://u@h:5432/db"
        )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BIND_ADDR", "localhost"),
        ("BIND_ADDR", "127.0.0.1:99999"),
        ("BIND_ADDR", "127.0.0.1:-1"),
        ("DATABASE_URL", "mysql://root@localhost/db"),
        ("STELLAR_RPC_URL", "ftp://example"),
        ("POLL_INTERVAL_SECS", "0"),
        ("POLL_INTERVAL_SECS", "soon"),
        ("RPC_MAX_ATTEMPTS", "0"),
        ("RPC_INITIAL_BACKOFF_MS", "-5"),
        ("RPC_MAX_BACKOFF_SECS", "x"),
        ("RPC_TIMEOUT_SECS", "0"),
        ("START_LEDGER", "newest"),
        ("START_LEDGER", "0"),
        ("CONTRACT_IDS", "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"),
        ("EVENT_TOPICS", "a,b,c,d,e"),
        ("EVENT_TOPICS", "**,transfer"),
        ("EVENT_TOPICS", "not a symbol!"),
        ("LOG_LEVEL", "loud"),
        ("ADMIN_TOKEN", "short"),
        ("WEBHOOK_URLS", "http://ok.example/hook,notaurl"),
    ],
)
def test_bad_values_name_variable_value_and_expected_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Each bad value raises ConfigError naming the variable, the value and what is expected."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    message = str(caught.value)
    assert caught.value.variable == variable
    assert message.startswith(f"{variable}=")
    assert "expected" in message
    assert "\n" not in message


def test_database_password_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rejected DATABASE_URL does not print its password."""
    monkeypatch.setenv("DATABASE_URL", "mysql://admin:hunter2secret@db/x")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    assert "hunter2secret" not in str(caught.value)
    assert "admin:***@db" in str(caught.value)


def test_safe_view_hides_secrets() -> None:
    """/api/status shows settings without tokens or database credentials."""
    settings = Settings.from_env(
        admin_token="a" * 20, database_url="postgresql://u:secretpw@h:5432/db"
    )
    view = str(settings.safe_view())
    assert "secretpw" not in view and "a" * 20 not in view
    assert settings.safe_view()["admin_enabled"] is True


def test_safe_view_shows_each_setting_as_its_field_says() -> None:
    """Secrets appear only as whether they are set or how many there are, URLs without user
    info and query values, the database only as its kind; settings marked not shown are absent."""
    secrets = ("a" * 20, "r" * 16, "w" * 16, "dbpw", "rpckey", "natspw")
    settings = Settings.from_env(
        admin_token=secrets[0],
        read_token=secrets[1],
        webhook_urls="http://127.0.0.1:9/a,http://127.0.0.1:9/b",
        webhook_secret=secrets[2],
        database_url="postgres://u:dbpw@h:5432/db",
        stellar_rpc_url="https://rpc.example/v1?apikey=rpckey",
        nats_url="nats://u:natspw@127.0.0.1:4222",
    )
    view = settings.safe_view()
    assert not [secret for secret in secrets if secret in str(view)]
    assert view["admin_enabled"] is True and view["read_token_required"] is True
    assert view["webhooks"] == 2 and view["database"] == "postgresql"
    assert view["stellar_rpc_url"] == "https://rpc.example/v1?apikey=***"
    assert view["nats_url"] == "nats://***@127.0.0.1:4222"
    hidden = [name for name, about in settings_about().items() if about.shown is Shown.NOT]
    assert "webhook_secret" in hidden and not set(hidden) & set(view)


def test_every_setting_describes_itself() -> None:
    """Each field carries its meaning, its expected form and how it is shown, in field order;
    the secrets are never shown as they are."""
    about = settings_about()
    assert list(about) == list(Settings.model_fields)
    assert all(entry.meaning and entry.form for entry in about.values())
    for name in ("admin_token", "read_token", "webhook_secret"):
        assert about[name].shown in (Shown.NOT, Shown.WHETHER_SET), name


def test_webhooks_need_a_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """WEBHOOK_URLS without a WEBHOOK_SECRET is refused: webhooks are always signed."""
    monkeypatch.setenv("WEBHOOK_URLS", "http://127.0.0.1:9/hook")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    assert caught.value.variable == "WEBHOOK_SECRET"
    monkeypatch.setenv("WEBHOOK_SECRET", "s" * 16)
    assert Settings.from_env().webhook_urls == ("http://127.0.0.1:9/hook",)


def test_redact_url_hides_user_info_and_query_values_but_keeps_host_and_path() -> None:
    """A URL shown to a person keeps where it points and loses every credential in it."""
    from stellar_reconciler.config import redact_url

    shown = redact_url("https://user:s3cret@rpc.example:8000/soroban/rpc?apikey=k3y&x=")
    assert shown == "https://***@rpc.example:8000/soroban/rpc?apikey=***&x"
    assert "s3cret" not in shown and "k3y" not in shown
    assert redact_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/"


def _error(**values: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(**values)
    return caught.value


def test_contract_id_with_a_bad_checksum_says_checksum() -> None:
    """A contract id with its last character changed is reported as a bad checksum."""
    error = _error(contract_ids=SAC[:-1] + "D")
    assert "bad checksum" in str(error)
    assert "CONTRACT_IDS" in str(error)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("G" + SAC[1:], "does not start with C"),
        (SAC[:-2], "has 54 characters"),
        (SAC[:-1] + "1", "outside A-Z and 2-7"),
    ],
)
def test_contract_id_problems_are_named(value: str, problem: str) -> None:
    """Each way a contract id can be wrong gets its own reason."""
    assert problem in str(_error(contract_ids=value))


def test_bad_topic_filter_names_the_filter_and_segment() -> None:
    """A bad segment in the second filter names filter 2, the segment's position and text."""
    error = _error(event_topics="transfer,*;mint,not-a-symbol")
    assert "filter 2 ('mint,not-a-symbol')" in str(error)
    assert "segment 2 ('not-a-symbol')" in str(error)


def test_too_many_topic_segments_says_how_many() -> None:
    """A filter of five segments says it has five and at most four are allowed."""
    assert "has 5 segments, at most 4" in str(_error(event_topics="a,b,c,d,e"))


def test_misspelled_dotenv_key_is_warned_with_the_nearest_setting(tmp_path: Path) -> None:
    """DATABSE_URL in .env is warned about, naming DATABASE_URL; real settings are not."""
    (tmp_path / ".env").write_text("DATABSE_URL=sqlite:///x.db\nSERVICE_NAME=ok\n")
    warnings = env_file_warnings()
    assert len(warnings) == 1
    assert "DATABSE_URL" in warnings[0] and "did you mean DATABASE_URL?" in warnings[0]


def test_bad_value_from_dotenv_says_it_came_from_dotenv(tmp_path: Path) -> None:
    """A bad value read from .env says so; the same value from the environment does not."""
    (tmp_path / ".env").write_text("RPC_MAX_ATTEMPTS=many\n")
    assert "set in .env" in str(_error())
    assert "set in .env" not in str(_error(rpc_max_attempts="many"))


def test_sqlite_url_in_a_missing_folder_says_so(tmp_path: Path) -> None:
    """A SQLite file in a folder that does not exist names the folder."""
    error = _error(database_url=f"sqlite:///{tmp_path}/missing/x.db")
    assert f"the folder {tmp_path / 'missing'} does not exist" in str(error)


def test_config_error_survives_pickling() -> None:
    """ConfigError pickles with its fields (errors cross process boundaries)."""
    error = _error(contract_ids=SAC[:-1] + "D")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 -- bytes this test just made
    assert str(copy) == str(error) and copy.reason == error.reason
