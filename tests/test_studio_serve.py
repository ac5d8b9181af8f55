"""The studio's /v1 API in public mode: personal keys, owners kept apart, the studio's quotas, and the
same service (library, resident bases, batches) as the pages. Through the official `openai` package."""

import httpx
import openai
import pytest
from helpers import free_port
from studio_fixtures import publish_fixed_router, publish_random

from adapter_core import AdapterError
from studio import use_view
from studio.keys import KeyRing, browser_secret, owner_of, personal_key, signing_secret
from studio.policy import Policy
from studio.service import Studio
from studio.ui import build_app, launch

pytestmark = pytest.mark.slow
BASE = "smollm2-135m-instruct"
ALICE, BOB = "anon:alice-token-aaaaaaaaaaaaaaaaaaaa", "hf:bob"
MESSAGE = [{"role": "user", "content": "Where is my parcel?"}]


def test_personal_keys_name_their_owner_and_cannot_be_forged(tmp_path):
    secret = signing_secret(tmp_path)
    assert signing_secret(tmp_path) == secret  # made once, kept
    assert personal_key(browser_secret(tmp_path), ALICE) != personal_key(secret, ALICE)  # the public one signs nothing
    key = personal_key(secret, ALICE)
    assert owner_of(secret, key) == ALICE and owner_of(secret, personal_key(secret, BOB)) == BOB
    assert owner_of("another-studio", key) is None
    name, signature = key.rsplit(".", 1)
    forged = personal_key(secret, BOB).rsplit(".", 1)[0] + "." + signature  # Bob's name, Alice's signature
    for bad in (forged, key[:-1] + ("0" if key[-1] != "0" else "1"), "as-!!!.abc", "", None, "sk-" + "a" * 40):
        assert owner_of(secret, bad) is None


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    studio = Studio(tmp_path_factory.mktemp("public-api"), policy=Policy(public=True))
    publish_random(studio, BASE, "alice-orders", "instruction", seed=1, owner=ALICE)
    publish_random(studio, BASE, "bob-billing", "instruction", seed=2, owner=BOB)
    publish_fixed_router(studio, "shared-router", ["orders", "billing"], "orders")  # no owner: an example
    demo = build_app(studio)
    port = free_port()
    launch(demo, prevent_thread_lock=True, server_port=port, quiet=True)
    yield studio, f"http://127.0.0.1:{port}"
    demo.close()


def client_for(studio, url, owner):
    key = KeyRing(studio.home).key(owner)
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=300)


def test_each_visitor_sees_and_uses_only_their_own_adapters(served):
    studio, url = served
    alice, bob = client_for(studio, url, ALICE), client_for(studio, url, BOB)
    assert {m.id for m in alice.models.list()} == {"alice-orders", "shared-router", BASE}
    assert {m.id for m in bob.models.list()} == {"bob-billing", "shared-router", BASE}
    reply = alice.chat.completions.create(model="alice-orders", messages=MESSAGE, max_tokens=8, temperature=0)
    assert reply.model == "alice-orders" and reply.choices[0].message.content
    with pytest.raises(openai.NotFoundError):  # the same answer as for a name that does not exist
        alice.chat.completions.create(model="bob-billing", messages=MESSAGE, max_tokens=8)
    with pytest.raises(openai.NotFoundError):
        alice.chat.completions.create(model="no-such-thing", messages=MESSAGE, max_tokens=8)


def test_auto_routes_through_a_shared_router_to_the_visitor_s_department(served):
    studio, url = served
    alice = client_for(studio, url, ALICE)
    reply = alice.chat.completions.create(
        model="auto", messages=MESSAGE, max_tokens=6, temperature=0, extra_body={"router": "shared-router"}
    )
    assert reply.model == "alice-orders" and reply.model_extra["route"]["label"] == "orders"


def test_no_key_a_forged_key_or_the_operator_secret_is_401(served):
    studio, url = served
    for headers in ({}, {"Authorization": "Bearer as-YWxpY2U.0000"}, {"Authorization": "Bearer sk-whatever"}):
        r = httpx.get(url + "/v1/models", headers=headers)
        assert r.status_code == 401 and "personal API key" in r.json()["error"]["message"]


def test_the_studio_s_quotas_hold_on_the_api(served):
    studio, url = served
    alice = client_for(studio, url, ALICE)
    with pytest.raises(openai.BadRequestError) as e:
        alice.chat.completions.create(
            model="alice-orders", messages=[{"role": "user", "content": "x" * 5000}], max_tokens=4
        )
    assert "at most 4,000" in e.value.body["message"]
    r = httpx.post(
        url + "/v1/classify",
        json={"model": "shared-router", "input": ["hi"] * 40},
        headers={"Authorization": f"Bearer {KeyRing(studio.home).key(ALICE)}"},
    )
    assert r.status_code == 400 and "at most 32 inputs" in r.json()["error"]["message"]
    # A long answer is cut at the studio's 512 new tokens, whatever max_tokens asks for.
    assert studio.dispatcher.new_tokens(studio.base(BASE), 10, 100_000) == 512


def test_the_api_help_shows_the_visitor_s_own_key_and_no_key_locally(served, tmp_path, monkeypatch):
    studio, url = served
    with pytest.raises(AdapterError, match="An API key needs a Hugging Face sign-in"):
        use_view.api_help(studio, ALICE, url)  # an anonymous identity is free: no key for it
    signed_in = "hf:alice"
    studio.library.publish(studio.library.get("alice-orders", ALICE).path, "alice-orders", owner=signed_in)
    text = use_view.api_help(studio, signed_in, url)
    key = text.split("```\n", 1)[1].split("\n", 1)[0]
    assert KeyRing(studio.home).owner_of(key) == signed_in and f'base_url="{url}/v1"' in text
    assert 'model="alice-orders"' in text  # her own adapter in the snippet
    monkeypatch.delenv("ADAPTER_STUDIO_API_KEY", raising=False)
    local = use_view.api_help(Studio(tmp_path), None, "http://127.0.0.1:7860")
    assert "No key is needed" in local and "as-" not in local
    monkeypatch.setenv("ADAPTER_STUDIO_API_KEY", "operator-secret")
    local = use_view.api_help(Studio(tmp_path), None, "http://127.0.0.1:7860")
    assert "operator-secret" not in local and "ADAPTER_STUDIO_API_KEY" in local
