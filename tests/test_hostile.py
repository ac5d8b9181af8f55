"""A hostile visitor against a running public studio, through gradio_client and Gradio's REST API.

Every case asserts the refusal message, and that nothing else changed: the victim's runs and adapters,
the shared example, and every file under the data directory. The list of cases with their outcomes
is in docs/hosting.md ("What a hostile visitor gets").
"""

import json
import struct
import tracemalloc
import zipfile
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from helpers import ROOT, free_port
from markdown_it import MarkdownIt
from studio_fixtures import publish_random

from adapter_core.engine.train import TrainConfig
from studio.policy import Policy
from studio.sample_files import SAMPLES_DIR
from studio.service import Studio
from studio.ui import build_app, launch

pytestmark = pytest.mark.slow  # the complete tier: a public studio served to hostile clients

PORT = free_port()  # xdist: several test modules serve at once
URL = f"http://127.0.0.1:{PORT}/"
VICTIM = "anon:victim-token-aaaaaaaaaaaaaaaaaaaaaaaa"
LABELS = ["billing", "orders", "tech"]
SAMPLE = "Support routing (classification, 480 rows)"
# The operator opened heavy work (uploads, training on one's own data) to anonymous visitors, so that a
# hostile anonymous visitor can try everything; tests/test_fairness.py holds the default policy.
POLICY = Policy(public=True, max_jobs_per_owner=2, max_queue=5, max_adapters_per_owner=4, anonymous_heavy=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile")
    studio = Studio(home, policy=POLICY)
    publish_random(studio, "minilm", "victim-router", "classification", LABELS, seed=1, owner=VICTIM)
    publish_random(studio, "minilm", "example-router", "classification", LABELS, seed=2)
    job, _ = studio.submit(
        TrainConfig(data=str(SAMPLES_DIR / "support_routing.csv"), name="victim-run", max_steps=2, max_length=32),
        owner=VICTIM,
    )
    studio.jobs.wait(job.id, 300)
    demo = build_app(studio)
    launch(demo, prevent_thread_lock=True, server_port=PORT, quiet=True)
    yield studio, home, job.id
    demo.close()


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns) for p in home.rglob("*") if p.is_file()}


def victim_view(studio: Studio, run_id: str):
    return (
        studio.library.names(owner=VICTIM),
        studio.jobs.store.get(run_id).status()["status"],
        [j.status for j in studio.jobs.jobs(owner=VICTIM)],
    )


def refused(app, call, message: str, sent: str = "") -> str:
    """Run a hostile call; it must fail with `message` and change nothing on disk or for the victim.

    No server path may leak. A reply may quote what the caller `sent` (Gradio echoes a value that is not
    among a dropdown's choices), so that is cut out first: what the caller typed is not a leak, wherever
    the checkout happens to live."""
    studio, home, run_id = app
    before, victim = snapshot(home), victim_view(studio, run_id)
    with pytest.raises(Exception) as info:
        call()
    text = str(info.value)
    assert message in text, text
    said = text.replace(sent, "<sent>") if sent else text
    assert "Traceback" not in said and str(home) not in said and "/tmp/" not in said, said
    assert str(ROOT) not in said, said
    assert snapshot(home) == before and victim_view(studio, run_id) == victim
    return text


def rest(api_name: str, data: list):
    """Gradio's REST API, as a caller without gradio_client would use it: any JSON it likes."""
    event = httpx.post(f"{URL}gradio_api/call/{api_name}", json={"data": data}, timeout=60).json()["event_id"]
    body = httpx.get(f"{URL}gradio_api/call/{api_name}/{event}", timeout=120).text
    if "event: error" in body:  # gradio hides the reason of a refused file path; we only learn "no"
        raise RuntimeError("REFUSED " + body.split("event: error", 1)[1].strip())
    return body


def server_file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def train(client: Client, **overrides):
    settings = dict(
        base_model="minilm",
        task="classification",
        name="mine",
        bottleneck=8,
        placement="houlsby",
        activation="gelu",
        lr=3e-3,
        epochs=1,
        batch_size=16,
        max_length=32,
        seed=1,
    )
    return client.predict(**{**settings, **overrides}, api_name="/start_training")


@pytest.fixture
def client(app):
    return Client(URL, verbose=False)


# Server paths in every path-like input -----------------------------------------------------------
@pytest.mark.parametrize("model", ["/etc", "../../root/.cache", "~/.adapter_studio/models", "gpt2", "evil/model"])
def test_base_models_outside_the_allow_list(app, client, model):
    refused(app, lambda: client.predict(model, api_name="/load_model"), "serves only these base models")


def test_bare_base_chat_on_a_local_path(app, client):
    call = lambda: client.predict("(none)", "/root", "hello", [], api_name="/chat")  # noqa: E731
    refused(app, call, "serves only these base models")


def test_data_file_as_a_server_path(app, client, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("text,label\n" + "".join(f"secret row {i},s{i % 2}\n" for i in range(20)))
    call = lambda: rest("load_data", [server_file(str(secret)), "classification", "minilm", 64])  # noqa: E731
    text = refused(app, call, "REFUSED")
    assert "secret row" not in text and "s1" not in text


def test_sample_picker_takes_only_sample_names(app, client):
    for value in ("/etc/passwd", str(SAMPLES_DIR / "support_routing.csv"), "../sample_data/orders_sft.csv"):
        refused(app, lambda v=value: client.predict(v, "minilm", 64, api_name="/use_sample"), "not in the list", value)


def test_test_file_and_adapter_upload_as_server_paths(app, client):
    studio, home, _ = app
    victim = studio.library.get("victim-router", owner=VICTIM).path
    refused(app, lambda: rest("evaluate", [["example-router", "victim-router"], server_file(str(home))]), "REFUSED")
    files = [server_file(str(victim / "adapter_config.json")), server_file(str(victim / "adapter_model.safetensors"))]
    refused(app, lambda: rest("upload_adapter", [files]), "REFUSED")


def test_training_without_loaded_data(app, client):
    refused(app, lambda: train(client), "Load a data file first")


# Absurd settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        # The components' own bounds answer first; tests/test_quotas.py shows the service refuses them too.
        ({"epochs": 1e9}, "Value 1000000000.0 is greater than maximum value 20.0"),
        ({"epochs": -1}, "Value -1 is less than minimum value 0.05"),
        ({"seed": -1}, "Value -1 is less than minimum value 0"),
        ({"batch_size": 10**6}, "Value 1000000 is greater than maximum value 128"),
        ({"bottleneck": 10**7}, "Value 10000000 is greater than maximum value 512"),
        ({"name": "../../evil"}, "Adapter names may use letters, digits, spaces, '_' and '-'"),
        ({"name": "<img src=x onerror=alert(1)>"}, "Adapter names may use letters, digits"),
        ({"name": "x" * 500}, "at most 64 characters"),
        ({"placement": "everywhere"}, "Value: everywhere is not in the list of choices"),
        ({"base_model": "/etc"}, "serves only these base models"),
    ],
)
def test_absurd_training_settings(app, client, overrides, message):
    client.predict(SAMPLE, "minilm", 64, api_name="/use_sample")
    refused(app, lambda: train(client, **overrides), message)


def test_max_length_is_clamped_to_the_models_limit(app, client):
    studio, _, _ = app
    client.predict(SAMPLE, "minilm", 64, api_name="/use_sample")
    job_id = train(client, max_length=1024, name="clamped")[0]
    job = studio.jobs.get(job_id)  # the run as it was accepted: what it trains with is settled
    studio.jobs.stop(job_id)  # nothing more to see, and the test would otherwise wait for a whole run
    assert job.config.max_length == 512 and job.config.max_seconds == POLICY.max_seconds
    assert job.config.max_steps == POLICY.max_steps  # every public run ends by itself
    studio.jobs.wait(job_id, 300)


def test_a_flood_of_submits_meets_the_owner_quota(app, client):
    studio, _, run_id = app
    client.predict(SAMPLE, "minilm", 64, api_name="/use_sample")
    victim = victim_view(studio, run_id)
    accepted, errors = [], []
    for i in range(8):
        try:
            accepted.append(train(client, name=f"flood {i}", epochs=20)[0])
        except Exception as e:
            errors.append(str(e))
    assert len(accepted) == 2 and len(errors) == 6
    assert all("You already have 2 runs queued or running (the limit is 2)" in e for e in errors)
    for job_id in accepted:
        client.predict(job_id, api_name="/training_status")
        studio.jobs.stop(job_id)
        studio.jobs.wait(job_id, 300)
    assert victim_view(studio, run_id) == victim


def test_a_hundred_run_sweep_is_refused(app, client):
    client.predict(SAMPLE, "minilm", 64, api_name="/use_sample")
    widths, rates = [str(r) for r in range(4, 44, 4)], [f"{i}e-4" for i in range(1, 11)]
    call = lambda: client.predict(  # noqa: E731
        base_model="minilm", task="classification", name="grid", bottlenecks=widths, lrs=rates, api_name="/sweep"
    )
    refused(app, call, "A sweep is at most 4 runs in this studio; you asked for 100 (10 bottlenecks x 10 learning")
    refused(app, lambda: client.predict("no-such-sweep", api_name="/sweep_results"), "No sweep")


# Other visitors' things -------------------------------------------------------------------------------
def test_another_visitors_adapter_does_not_exist_for_me(app, client):
    missing = "No adapter named 'victim-router' in your library."
    refused(app, lambda: client.predict("victim-router", "hello", api_name="/classify"), missing)
    refused(app, lambda: client.predict("victim-router", "hello", api_name="/route"), missing)
    refused(app, lambda: client.predict("victim-router", "a\nb", api_name="/route_many"), missing)
    compare = lambda: client.predict(["victim-router", "example-router"], False, "hi", api_name="/compare")  # noqa: E731
    refused(app, compare, missing)
    refused(app, lambda: client.predict("victim-router", "mine", api_name="/rename_adapter"), missing)
    refused(app, lambda: client.predict("victim-router", api_name="/delete_adapter"), missing)
    refused(app, lambda: client.predict("victim-router", api_name="/download_adapter"), missing)
    assert "victim-router" not in [a["adapter"] for a in client.predict(api_name="/list_adapters")]


def test_another_visitors_runs_do_not_exist_for_me(app, client):
    _, _, run_id = app
    refused(app, lambda: client.predict(run_id, api_name="/training_status"), "No job")
    refused(app, lambda: client.predict(run_id, api_name="/show_run"), "No run")
    refused(app, lambda: client.predict("../../etc", api_name="/show_run"), "No run")
    refused(app, lambda: client.predict(run_id, api_name="/resume_run"), "No run")
    refused(app, lambda: client.predict("../../etc", api_name="/resume_run"), "No run")
    assert client.predict(api_name="/training_status") == "No run yet: start one above."


def test_shared_examples_are_read_only(app, client):
    refused(app, lambda: client.predict("example-router", api_name="/delete_adapter"), "read-only")
    refused(app, lambda: client.predict("example-router", "mine", api_name="/rename_adapter"), "read-only")
    label = client.predict("example-router", "Where is my parcel?", api_name="/classify")["label"]
    assert label in LABELS  # examples serve everyone


# Bounded requests -------------------------------------------------------------------------------------
def test_megabyte_prompts(app, client):
    huge = "x" * 1_000_000
    refused(app, lambda: client.predict("example-router", huge, api_name="/classify"), "the limit is 4,000")
    chat = lambda: client.predict("(none)", "smollm2-135m-instruct", huge, [], api_name="/chat")  # noqa: E731
    refused(app, chat, "the limit is 4,000")
    many = "\n".join(f"message {i}" for i in range(300))
    refused(app, lambda: client.predict("example-router", many, api_name="/route_many"), "at most 32 messages")


# Malformed, oversized, bomb-like and mis-shaped adapter uploads ------------------------------------------
def adapter_files(tmp_path: Path, meta: dict, header: bytes | None = None) -> list[str]:
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    (tmp_path / "adapter_model.safetensors").write_bytes(header or struct.pack("<Q", 2) + b"{}")
    return [str(tmp_path / "adapter_config.json"), str(tmp_path / "adapter_model.safetensors")]


def tags(markdown: str) -> list[str]:
    """The links, images and raw HTML that `markdown` would render (what Gradio's Markdown shows)."""
    rendered = MarkdownIt("commonmark").render(markdown)
    return [t for t in ("<a ", "<img", "<script") if t in rendered]


def upload(client: Client, paths: list[str]):
    return client.predict([handle_file(p) for p in paths], api_name="/upload_adapter")


def good_meta(app, **changes) -> dict:
    studio = app[0]
    meta = json.loads((studio.library.get("example-router").path / "adapter_config.json").read_text())
    return {**meta, **changes}


def test_malformed_adapter_config(app, client, tmp_path):
    files = adapter_files(tmp_path, {"task": "classification", "config": {}, "base": "x"})
    refused(app, lambda: upload(client, files), "base")


def test_huge_bottleneck_and_million_labels_in_a_small_file(app, client, tmp_path):
    meta = good_meta(app, config={**good_meta(app)["config"], "bottleneck": 10_000_000}, bottleneck=10_000_000)
    refused(app, lambda: upload(client, adapter_files(tmp_path, meta)), "bottleneck is 10,000,000; this studio accepts")
    labels = [f"l{i}" for i in range(1_000_000)]
    files = adapter_files(tmp_path, good_meta(app, labels=labels))
    refused(app, lambda: upload(client, files), "adapter_config.json is 10.4 MB; the limit is 1.0 MB")


def test_mis_shaped_tensors(app, client, tmp_path):
    studio = app[0]
    weights = (studio.library.get("example-router").path / "adapter_model.safetensors").read_bytes()
    meta = good_meta(app, config={**good_meta(app)["config"], "bottleneck": 32}, bottleneck=32)  # the file holds r=16
    files = adapter_files(tmp_path, meta, weights)
    refused(app, lambda: upload(client, files), "attn.down.bias has shape [16], expected [32] (bottleneck 32")


def test_bogus_safetensors_header(app, client, tmp_path):
    files = adapter_files(tmp_path, good_meta(app), struct.pack("<Q", 2**40) + b"{}")
    refused(app, lambda: upload(client, files), "1,099,511,627,776-byte header; the limit is 4,194,304")


def test_zip_bomb_is_refused_without_reading_it(app, client, tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("adapter_config.json", json.dumps(good_meta(app)))
        with z.open("adapter_model.safetensors", "w") as member:
            for _ in range(200):
                member.write(bytes(2**20))
    assert bomb.stat().st_size < 2 * 2**20
    tracemalloc.start()
    refused(
        app, lambda: upload(client, [str(bomb)]), "unpacks over 200 times its packed size; this looks like a zip bomb"
    )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"the server read {peak / 2**20:.0f} MB for a bomb"


def test_zip_with_too_many_members(app, client, tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(1000):
            z.writestr(f"junk/{i}.json", "{}")
    refused(app, lambda: upload(client, [str(many)]), "many.zip holds 1,000 files; the limit is 16.")


def test_pickles_and_scripts_are_not_adapters(app, client, tmp_path):
    pickle = tmp_path / "adapter_model.bin"
    pickle.write_bytes(b"\x80\x04K\x01.")
    refused(app, lambda: upload(client, [str(pickle)]), "Invalid file type. Please upload a file that is one of")


# Markdown and HTML in names, labels and data -------------------------------------------------------------
def test_markup_in_labels_is_shown_literally(app, client, tmp_path):
    studio, _, _ = app
    data = tmp_path / "markup.csv"
    rows = [
        f"message number {i},{'<img src=x onerror=alert(1)>' if i % 2 else '[click](http://evil.example)'}"
        for i in range(40)
    ]
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    out = client.predict(handle_file(str(data)), "classification", "minilm", 64, api_name="/load_data")
    summary = out[2]  # data_name, task, then the summary
    assert not tags(summary) and "&lt;img src=x onerror=alert(1)&gt;" in MarkdownIt().render(summary)
    job_id = train(client, name="markup")[0]
    studio.jobs.wait(job_id, 300)
    status = client.predict(job_id, api_name="/training_status")
    assert "Saved to the library as 'markup'" in status
    table = client.predict(["markup", "example-router"], False, "message number 3", api_name="/compare")
    assert not any(tags(col["value"]) for col in table[:2]) and "&lt;img" in MarkdownIt().render(table[0]["value"])
