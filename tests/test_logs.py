"""Log redaction: registered secrets never reach a log line, and the registry stays bounded."""

import io
import json
import logging

from bot import logs


def _capture(fmt="json"):
    stream = io.StringIO()
    logs.configure_logging("INFO", fmt, stream=stream)
    return stream


def test_pinned_multiline_secret_is_masked_line_by_line():
    pem = "-----BEGIN SOMETHING-----\nMIIEowIBAAKCAQEAuniquelinevalue0001\nMIIEowIBAAKCAQEAuniquelinevalue0002\n-----END SOMETHING-----"
    logs.register_secret(pem, pinned=True)
    stream = _capture()
    logging.getLogger("t").info("key part: %s", "MIIEowIBAAKCAQEAuniquelinevalue0002")
    assert "uniquelinevalue0002" not in stream.getvalue()


def test_ephemeral_token_masked_as_a_word_in_urls_and_sentences():
    token = "tok9f8e7d6c5b4a3210zz"
    logs.register_secret(token)
    stream = _capture("text")
    log = logging.getLogger("t")
    log.info("token %s.", token)
    log.info("GET https://x.test/a?token=%s&b=1", token)
    log.warning("failed", exc_info=RuntimeError(f"bad credentials {token}"))
    out = stream.getvalue()
    assert token not in out
    assert out.count(logs.MASK) >= 3


def test_correlation_id_on_every_line():
    stream = _capture()
    with logs.correlated("corr-42"):
        logging.getLogger("t").info("hello")
    assert json.loads(stream.getvalue().splitlines()[-1])["correlation_id"] == "corr-42"


def test_ephemeral_secrets_expire_and_stay_bounded(monkeypatch):
    monkeypatch.setattr(logs, "EPHEMERAL_MAX", 50)
    for i in range(200):
        logs.register_secret(f"bounded-secret-{i:04d}-xxxxxxxx")
    assert logs.ephemeral_secret_count() <= 51
    assert logs.redact("bounded-secret-0199-xxxxxxxx") == logs.MASK  # the newest are kept
    assert logs.redact("bounded-secret-0000-xxxxxxxx") == "bounded-secret-0000-xxxxxxxx"
