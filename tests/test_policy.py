"""Public mode: when it turns on, what it allows, and the text helpers that keep user strings inert."""

import pytest
from helpers import ROOT
from markdown_it import MarkdownIt

from adapter_core import AdapterError
from studio.policy import Policy
from studio.text import md, redact


@pytest.mark.parametrize(
    "env, public",
    [
        ({}, False),
        ({"SPACE_ID": "someone/adapter-studio"}, True),
        ({"ADAPTER_STUDIO_PUBLIC": "1"}, True),
        ({"SPACE_ID": "someone/adapter-studio", "ADAPTER_STUDIO_PUBLIC": "0"}, False),
    ],
)
def test_public_mode_turns_on_on_spaces_or_by_flag(monkeypatch, env, public):
    for key in ("SPACE_ID", "ADAPTER_STUDIO_PUBLIC", "ADAPTER_STUDIO_ALLOWED_MODELS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Policy.from_env().public is public


def test_public_models_come_from_the_catalog_and_the_allow_list(monkeypatch):
    monkeypatch.setenv("ADAPTER_STUDIO_PUBLIC", "1")
    monkeypatch.setenv("ADAPTER_STUDIO_ALLOWED_MODELS", "org/one, org/two")
    policy = Policy.from_env()
    assert policy.check_model("minilm") == "minilm" and policy.check_model("org/two") == "org/two"
    for refused in ("org/three", "/etc", "../models/x", "~/private-model"):
        with pytest.raises(AdapterError, match="serves only these base models: minilm, smollm2"):
            policy.check_model(refused)
    assert Policy.local().check_model("/any/local/folder") == "/any/local/folder"


def test_prompts_and_new_tokens_are_bounded():
    policy = Policy(public=True)
    with pytest.raises(AdapterError, match="1,000,000 characters; the limit is 4,000"):
        policy.check_prompt("x" * 1_000_000)
    with pytest.raises(AdapterError, match="Type a message first"):
        policy.check_prompt("   ")
    assert policy.clamp_new_tokens(10**9) == policy.max_new_tokens
    with pytest.raises(AdapterError, match="at least 1"):
        policy.clamp_new_tokens(0)


def test_user_strings_render_literally_in_markdown():
    hostile = "**bold** [click](http://evil.example) ![x](http://evil.example/i.png) <script>alert(1)</script> $x$"
    rendered = MarkdownIt("commonmark").render(md(hostile))
    for tag in ("<a ", "<img", "<script", "<strong"):
        assert tag not in rendered
    assert "**bold**" in rendered and "&lt;script&gt;" in rendered  # shown as typed
    assert md("480 of 480 rows used: billing 160.") == "480 of 480 rows used: billing 160."


def test_messages_lose_server_paths():
    text = "'/root/.adapter_studio/adapters/x/adapter_config.json' is not valid; see C:\\data\\runs\\a.csv too."
    out = redact(text)
    assert "/root" not in out and ".adapter_studio" not in out and "C:\\" not in out
    assert "adapter_config.json" in out and "a.csv" in out
    assert redact("No adapter named 'x' in your library.") == "No adapter named 'x' in your library."
    hub = "its parquet conversion may work: hf://datasets/eve/x@refs/convert/parquet; or hf://eve/pack/orders."
    assert redact(hub) == hub  # a Hub reference is a name the visitor needs, not the server's layout
    assert "srv" not in redact("see file:///srv/studio/secret.csv")  # after a scheme, a path is still cut


def test_the_operator_settings_of_identity_and_fairness(monkeypatch):
    for key in ("ADAPTER_STUDIO_ANONYMOUS_HEAVY", "ADAPTER_STUDIO_TRUST_FORWARDED", "ADAPTER_STUDIO_FAIR_SHARE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ADAPTER_STUDIO_PUBLIC", "1")
    monkeypatch.delenv("SPACE_ID", raising=False)
    policy = Policy.from_env()
    assert not policy.anonymous_heavy and not policy.trust_forwarded and policy.fair_share == 0.25
    assert policy.share(20) == 5 and policy.share(2) == 1 and policy.share(64) == 16
    assert policy.signed_in("hf:alice") and not policy.signed_in("anon:x") and not policy.signed_in("session:y")
    with pytest.raises(AdapterError, match="A sweep needs a Hugging Face sign-in in this public studio"):
        policy.check_heavy("anon:x", "A sweep")
    monkeypatch.setenv("SPACE_ID", "someone/adapter-studio")  # Spaces' proxy writes X-Forwarded-For
    monkeypatch.setenv("ADAPTER_STUDIO_ANONYMOUS_HEAVY", "1")
    monkeypatch.setenv("ADAPTER_STUDIO_FAIR_SHARE", "0.5")
    policy = Policy.from_env()
    assert policy.anonymous_heavy and policy.trust_forwarded and policy.share(20) == 10
    policy.check_heavy("anon:x", "A sweep")  # opened by the operator
    assert Policy.local().signed_in(None) and Policy.local().share(20) == 20


def test_the_hosting_page_states_the_policy_s_own_figures():
    """docs/hosting.md's fairness and quota figures are the policy's defaults: a changed default (or a
    figure written wrong, as "4 per key" once was) fails here, not in a visitor's hands."""
    from adapter_core.serve import Limits
    from studio.upload_budget import UPLOADS_AT_ONCE

    page = " ".join((ROOT / "docs" / "hosting.md").read_text().split())  # wrapped lines read as one
    p = Policy(public=True)
    serve = p.serve_limits()
    figures = [
        f"pool of {p.anonymous_pool} runs shared by all of them",
        f"default **{p.fair_share}**",
        f"the training queue ({p.share(p.max_queue)} of {p.max_queue} runs per address",
        f"Gradio's queue ({p.share(p.queue_size)} of {p.queue_size} events waiting or running)",
        f"the answer slots ({p.share(p.serve_slots)} of {p.serve_slots} classify",
        f"the heavy slots ({p.share(p.heavy_slots)} of {p.heavy_slots})",
        f"({p.share(serve.max_waiting)} of {serve.max_waiting} requests in flight per address, "
        f"beside {Limits.max_in_flight_per_owner} per key)",
        f"`max_size` {p.queue_size} events waiting",
        f"{p.max_jobs_per_owner} runs queued or running per visitor, and {p.max_queue} in all",
        f"{p.max_adapters_per_owner} adapters and {p.max_bytes_per_owner >> 20} MB per visitor",
        f"prompts of {p.max_prompt_chars:,} characters, {p.max_new_tokens} new tokens and "
        f"{p.max_route_messages} routed messages",
        f"data files of {p.max_data_bytes >> 20} MB and {p.max_data_rows:,} rows",
        f"evaluations of {p.max_eval_rows:,} rows ({p.max_eval_rows_anonymous} without a sign-in)",
        f"{Limits.max_in_flight_per_owner} answers in progress at a time per visitor",
        f"`/v1` request bodies of {serve.max_body_bytes >> 20} MB",
        f"{UPLOADS_AT_ONCE} at once and {p.max_upload_bytes_per_address >> 20} MB an hour per client address",
    ]
    missing = [f for f in figures if f not in page]
    assert not missing, f"docs/hosting.md does not say: {missing}"
