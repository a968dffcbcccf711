"""The operator's side: a customer's CleverTap callback URL and default country from the CLI."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.callbacks.test_callback_cli import config, run, run_json  # noqa: F401


def test_operator_sets_shows_and_removes_the_clevertap_callback(config: Path) -> None:  # noqa: F811
    run_json(config, "customers", "create", "--email", "ops@example.com", "--password",
             "long enough", "--customer-id", "C-9")  # fmt: skip

    updated = run_json(
        config, "clevertap", "set", "C-9", "--callback-url", "http://127.0.0.1:9/dlr",
        "--default-country", "+44", "--reply-number", "+919000000001",
    )  # fmt: skip
    refused = run(config, "clevertap", "set", "C-9", "--callback-url", "http://10.1.2.3/dlr")
    nothing = run(config, "clevertap", "set", "C-9")
    cleared = run_json(
        config, "clevertap", "set", "C-9", "--callback-url", "", "--no-reply-numbers"
    )
    shown = run_json(config, "clevertap", "show", "C-9")

    assert updated == {
        "customerId": "C-9", "callbackUrl": "http://127.0.0.1:9/dlr", "defaultCountryCode": "44",
        "replyNumbers": ["+919000000001"],
    }  # fmt: skip
    assert refused.returncode != 0
    assert "callback URL refused" in refused.stderr
    assert nothing.returncode != 0
    assert cleared["callbackUrl"] is None
    assert shown == {
        "customerId": "C-9", "callbackUrl": None, "defaultCountryCode": "44", "replyNumbers": [],
    }  # fmt: skip
