"""The adapter library for strangers: owners, caps on uploads and zips, a listing that never breaks,
recoverable renames, and no server path in any message or download. Real files throughout."""

import dataclasses
import json
import logging
import struct
import time
import tracemalloc
import warnings
import zipfile

import pytest
from helpers import tiny_model

from adapter_core import AdapterConfig, AdapterError, add_adapter, load_adapter, save_adapter
from adapter_core.io import CONFIG_FILE, WEIGHTS_FILE
from studio.library import OWNER_FILE, Library, check_name, safe_name
from studio.policy import Policy

LABELS = ["billing", "orders", "tech"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A real classification adapter on a tiny BERT, saved as a training run would save it."""
    folder = tmp_path_factory.mktemp("run") / "adapter"
    model = tiny_model("bert", head="base")
    add_adapter(model, "route", AdapterConfig(bottleneck=8), labels=LABELS)
    extra = {
        "base_model": "/srv/models/tiny-bert",
        "train_config": {"data": "/srv/uploads/abc/support.csv", "val_data": "/srv/uploads/abc/val.csv"},
        "training": {"status": "completed", "metrics": {"accuracy": 0.9}},
        "owner": "someone-else",
    }
    return save_adapter(model, "route", folder, extra=extra)


@pytest.fixture
def lib(tmp_path):
    return Library(tmp_path / "home")


def copy_of(source, tmp_path, name="copy", **changes):
    """The source adapter's two files in a new folder, with its config changed."""
    folder = tmp_path / name
    folder.mkdir()
    meta = json.loads((source / CONFIG_FILE).read_text())
    meta.update(changes)
    (folder / CONFIG_FILE).write_text(json.dumps(meta))
    (folder / WEIGHTS_FILE).write_bytes((source / WEIGHTS_FILE).read_bytes())
    return folder


def zip_of(folder, path, compression=zipfile.ZIP_DEFLATED, files=(CONFIG_FILE, WEIGHTS_FILE)):
    with zipfile.ZipFile(path, "w", compression) as z:
        for f in files:
            z.write(folder / f, f"{folder.name}/{f}")
    return path


MALFORMED = '{"task": "classification", "config": {}, "base": "x"}'


def test_a_bad_folder_is_skipped_and_logged_never_fatal(lib, source, tmp_path, caplog):
    lib.publish(source, "good")
    lib.publish(source, "malformed")
    (lib.root / "malformed" / CONFIG_FILE).write_text(MALFORMED)
    lib.publish(source, "not json")
    (lib.root / "not json" / CONFIG_FILE).write_text("{oops")
    lib.publish(source, "no weights")
    (lib.root / "no weights" / WEIGHTS_FILE).unlink()
    lib.publish(source, "bad header")
    (lib.root / "bad header" / WEIGHTS_FILE).write_bytes(struct.pack("<Q", 2**40) + b"{}")
    lib.publish(source, "empty owner")
    (lib.root / "empty owner" / OWNER_FILE).write_text("\n")
    (lib.root / "stray file.txt").write_text("hello")
    with caplog.at_level(logging.WARNING, logger="adapter_studio"):
        assert lib.names() == ["good"]
        assert Library(lib.root.parent).names(owner="alice") == ["good"]  # a restart lists it too
    skipped = {r.args[0] for r in caplog.records if r.message.startswith("Skipping")}
    assert skipped == {"malformed", "not json", "no weights", "bad header", "empty owner"}
    with pytest.raises(AdapterError, match="'malformed' is damaged and cannot be used: .*'base' must be an object"):
        lib.get("malformed")
    with pytest.raises(AdapterError, match="No adapter named 'empty owner' in your library"):
        lib.get("empty owner", owner="alice")  # an unreadable owner file hides the adapter, it never shares it


def test_a_routers_statistics_go_with_it_through_download_upload_and_are_checked(lib, tmp_path):
    """A router decides out of scope with its statistics file: a download holds it, an upload (a zip, or
    the loose files) takes it, checked as loading checks it, and the copy decides as the original."""
    import torch
    from safetensors.torch import save_file

    from adapter_core import STATS_FILE, get_record
    from adapter_core.out_of_scope import Detector, fit_stats

    model = tiny_model("bert", head="base")
    add_adapter(model, "route", AdapterConfig(bottleneck=8), labels=LABELS)
    hidden = model.config.hidden_size
    stats = fit_stats(torch.randn(60, hidden), torch.arange(60) % 3, 3, logits=torch.randn(60, 3))
    get_record(model, "route").detector = Detector("energy_knn", 0.5, stats)
    section = {"score": "energy_knn", "threshold": 0.5}
    router = save_adapter(model, "route", tmp_path / "router", extra={"out_of_scope": section})
    lib.publish(router, "router", owner="alice")
    download = lib.zip("router", tmp_path, owner="alice")
    assert f"router/{STATS_FILE}" in zipfile.ZipFile(download).namelist()
    for files in ([download], [router / CONFIG_FILE, router / WEIGHTS_FILE, router / STATS_FILE]):
        copy = lib.upload(files, owner="bob", name="copy", limits=Policy(public=True))
        fresh = tiny_model("bert", head="base")
        load_adapter(fresh, copy.path, name="copy")
        detector = get_record(fresh, "copy").detector
        assert detector.score == "energy_knn" and torch.equal(detector.stats.bank, stats.bank)
        lib.delete("copy", owner="bob")
    hostile = copy_of(router, tmp_path, "hostile")
    save_file({**stats.tensors(), "bank": torch.full_like(stats.bank, float("inf"))}, hostile / STATS_FILE)
    with pytest.raises(AdapterError, match="not finite numbers in its bank"):
        lib.upload(
            [zip_of(hostile, tmp_path / "hostile.zip", files=(CONFIG_FILE, WEIGHTS_FILE, STATS_FILE))], owner="eve"
        )
    assert lib.names(owner="eve") == []


def test_upload_refuses_a_malformed_config(lib, source, tmp_path):
    folder = copy_of(source, tmp_path)
    (folder / CONFIG_FILE).write_text(MALFORMED)
    with pytest.raises(AdapterError, match="adapter_config.json: 'base' must be an object"):
        lib.upload([folder / CONFIG_FILE, folder / WEIGHTS_FILE], owner="alice", limits=Policy())
    with pytest.raises(AdapterError, match="'base' must be an object"):
        lib.upload([zip_of(folder, tmp_path / "m.zip")])
    assert lib.names() == [] and sorted(p.name for p in lib.root.iterdir()) == []  # no staging left behind


def test_upload_caps_and_tensors_that_disagree_with_the_config(lib, source, tmp_path):
    meta = json.loads((source / CONFIG_FILE).read_text())
    huge = copy_of(source, tmp_path, "huge", bottleneck=10_000_000, config={**meta["config"], "bottleneck": 10_000_000})
    files = [huge / CONFIG_FILE, huge / WEIGHTS_FILE]
    with pytest.raises(AdapterError, match="bottleneck is 10,000,000; this studio accepts at most 1,024"):
        lib.upload(files, owner="alice", limits=Policy())
    with pytest.raises(AdapterError, match=r"down.bias has shape \[8\], expected \[10000000\]"):
        lib.upload(files)  # no studio caps: the header still has to match
    many = copy_of(source, tmp_path, "many", labels=[f"l{i}" for i in range(600)])
    with pytest.raises(AdapterError, match="has 600 labels; this studio accepts at most 512"):
        lib.upload([many / CONFIG_FILE, many / WEIGHTS_FILE], owner="alice", limits=Policy())
    four = copy_of(source, tmp_path, "four", labels=[*LABELS, "returns"])
    with pytest.raises(AdapterError, match=r"head.bias \[3\], .* where 4 labels need head.bias \[4\]"):
        lib.upload([four / CONFIG_FILE, four / WEIGHTS_FILE])
    chat = copy_of(source, tmp_path, "chat", task="instruction", labels=None, pooling=None)
    with pytest.raises(AdapterError, match=r"its head tensors are head.bias \[3\], .* where 0 labels need none"):
        lib.upload([chat / CONFIG_FILE, chat / WEIGHTS_FILE])
    pfeiffer = copy_of(source, tmp_path, "pf", config={**meta["config"], "placement": "pfeiffer"})
    with pytest.raises(AdapterError, match="has tensor 'adapters.s0.l0.attn.down.bias', where its config places no"):
        lib.upload([pfeiffer / CONFIG_FILE, pfeiffer / WEIGHTS_FILE])
    assert lib.names() == []
    entry = lib.upload([source / CONFIG_FILE, source / WEIGHTS_FILE], owner="alice", limits=Policy())
    assert entry.name == "route" and entry.owner == "alice"


def write_bomb(path, size=200 * 2**20):
    """A valid adapter config plus a 'weights' member of `size` zero bytes, deflated to about 1/1000."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(CONFIG_FILE, json.dumps({"task": "instruction", "config": {}, "base": {}}))
        with z.open(WEIGHTS_FILE, "w", force_zip64=True) as f:
            block = bytes(2**20)
            for _ in range(size // 2**20):
                f.write(block)
    return path


def traced(call):
    """Run `call`, returning (its AdapterError, peak traced bytes, seconds)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(AdapterError) as err:
            call()
        return err.value, tracemalloc.get_traced_memory()[1], time.perf_counter() - start
    finally:
        tracemalloc.stop()


def test_a_zip_bomb_is_refused_without_reading_it(lib, tmp_path):
    bomb = write_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 400_000
    error, peak, seconds = traced(lambda: lib.upload([bomb], owner="alice", limits=Policy()))
    assert "bomb.zip: adapter_model.safetensors unpacks over 200 times its packed size" in str(error)
    assert peak < 8 * 2**20 and seconds < 2
    # Within the ratio, the size cap stops it; without any limits, local mode's ratio of 1000 does.
    error, peak, _ = traced(lambda: lib.upload([bomb], limits=dataclasses.replace(Policy(), max_zip_ratio=1e6)))
    assert "is over 64.0 MB unpacked; that is the limit" in str(error) and peak < 8 * 2**20
    error, peak, _ = traced(lambda: lib.upload([bomb]))
    assert "1000 times its packed size" in str(error) and peak < 8 * 2**20


def test_a_zip_that_lies_about_its_sizes_is_never_read_past_its_claim(lib, tmp_path):
    bomb = write_bomb(tmp_path / "liar.zip")
    data = bytearray(bomb.read_bytes())
    # Claim 1 MB unpacked in the central directory, which zipfile reads, for the 200 MB member.
    entry = data.rindex(b"PK\x01\x02")
    assert data[entry + 46 : entry + 46 + len(WEIGHTS_FILE)] == WEIGHTS_FILE.encode()
    assert struct.unpack("<I", data[entry + 24 : entry + 28])[0] == 200 * 2**20
    data[entry + 24 : entry + 28] = struct.pack("<I", 2**20)
    bomb.write_bytes(bytes(data))
    assert zipfile.ZipFile(bomb).getinfo(WEIGHTS_FILE).file_size == 2**20
    error, peak, seconds = traced(lambda: lib.upload([bomb], owner="alice", limits=Policy()))
    assert "liar.zip is not a valid zip file, or it is damaged" in str(error)
    assert peak < 8 * 2**20 and seconds < 2


def test_zip_entry_count_duplicates_and_contents(lib, source, tmp_path):
    crowded = zip_of(source, tmp_path / "crowded.zip")
    with zipfile.ZipFile(crowded, "a") as z:
        for i in range(20):
            z.writestr(f"notes/{i}.txt", "hi")
    with pytest.raises(AdapterError, match="crowded.zip holds 22 files; the limit is 16"):
        lib.upload([crowded], owner="alice", limits=Policy())
    twice = zip_of(source, tmp_path / "twice.zip")
    with warnings.catch_warnings(), zipfile.ZipFile(twice, "a") as z:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is told to write
        z.write(source / CONFIG_FILE, f"adapter/{CONFIG_FILE}")
    with pytest.raises(AdapterError, match="twice.zip holds the same file twice"):
        lib.upload([twice])
    two = zip_of(source, tmp_path / "two.zip")
    with zipfile.ZipFile(two, "a") as z:
        z.write(source / CONFIG_FILE, f"other/{CONFIG_FILE}")
    with pytest.raises(AdapterError, match="two.zip holds two adapter_config.json files"):
        lib.upload([two])
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("payload.py", "print('hi')")
    with pytest.raises(AdapterError, match="empty.zip holds no adapter files"):
        lib.upload([empty])
    (tmp_path / "junk.zip").write_bytes(b"PK not really")
    with pytest.raises(AdapterError, match="junk.zip is not a valid zip file"):
        lib.upload([tmp_path / "junk.zip"])
    with pytest.raises(AdapterError, match="Only adapter_config.json, adapter_model.safetensors or a .zip"):
        lib.upload([tmp_path / "x.py"])
    with pytest.raises(AdapterError, match="^gone.zip could not be read") as err:
        lib.upload([tmp_path / "gone.zip"])
    assert str(tmp_path) not in str(err.value)
    with pytest.raises(AdapterError, match="The upload holds two adapter_config.json files"):
        lib.upload([source / CONFIG_FILE, source / CONFIG_FILE, source / WEIGHTS_FILE])
    small = dataclasses.replace(Policy(), max_member_bytes=1000)
    with pytest.raises(AdapterError, match=r"adapter_model.safetensors is [\d,]+ bytes; the limit is 1,000 bytes"):
        lib.upload([source / CONFIG_FILE, source / WEIGHTS_FILE], limits=small)
    assert lib.names() == []
    assert lib.upload([zip_of(source, tmp_path / "fine.zip")], limits=Policy()).name == "route"


@pytest.fixture
def shared(lib, source):
    """A shared example and one adapter each for alice and bob."""
    lib.publish(source, "example")
    lib.publish(source, "alice one", owner="alice")
    lib.publish(source, "alice two", owner="alice")
    lib.publish(source, "bob one", owner="bob")
    return lib


def test_owners_see_their_own_and_the_shared_examples_only(shared, tmp_path):
    lib = shared
    assert lib.names(owner="alice") == ["alice one", "alice two", "example"]
    assert lib.names(owner="bob") == ["bob one", "example"]
    assert lib.names(task="classification") == ["alice one", "alice two", "bob one", "example"]
    assert lib.names(task="instruction", owner="alice") == []
    assert {e.name: e.owner for e in lib.entries()} == {
        "alice one": "alice",
        "alice two": "alice",
        "bob one": "bob",
        "example": None,
    }
    bobs = lib.get("bob one", owner="bob").path
    assert (bobs / OWNER_FILE).read_text() == "bob\n" and bobs.parent == lib.home("bob") != lib.root
    hidden = "No adapter named 'bob one' in your library."
    for call in (
        lambda: lib.get("bob one", owner="alice"),
        lambda: lib.rename("bob one", "mine", owner="alice"),
        lambda: lib.delete("bob one", owner="alice"),
        lambda: lib.zip("bob one", tmp_path, owner="alice"),
    ):
        with pytest.raises(AdapterError) as err:
            call()
        assert str(err.value) == hidden
    with pytest.raises(AdapterError, match="No adapter named 'nope' in your library"):
        lib.get("nope", owner="alice")  # the same message as for an adapter that exists elsewhere
    with pytest.raises(AdapterError, match="No adapter named 'nope' in the library"):
        lib.get("nope")
    read_only = "'example' is a shared example and read-only; download it and upload a copy to change it."
    for owner in ("alice", "bob"):
        assert lib.get("example", owner=owner).owner is None
        with pytest.raises(AdapterError) as err:
            lib.delete("example", owner=owner)
        assert str(err.value) == read_only
        with pytest.raises(AdapterError, match="is a shared example and read-only"):
            lib.rename("example", "mine", owner=owner)
    assert lib.names(owner="alice") == ["alice one", "alice two", "example"]
    # A download of the shared example, uploaded again, is alice's own copy.
    copy = lib.upload([lib.zip("example", tmp_path, owner="alice")], owner="alice", name="my example")
    assert copy.owner == "alice" and lib.names(owner="bob") == ["bob one", "example"]
    lib.rename("my example", "mine", owner="alice")
    lib.delete("mine", owner="alice")
    # Local mode sees and edits everything.
    lib.rename("bob one", "bobs", owner=None)
    assert lib.get("bobs", owner="bob").owner == "bob"
    lib.delete("example")
    assert lib.names(owner="bob") == ["bobs"]


def test_usage_counts_an_owners_adapters_and_bytes(shared):
    count, size = shared.usage("alice")
    files = [f for name in ("alice one", "alice two") for f in shared.get(name, owner="alice").path.iterdir()]
    assert count == 2 and size == sum(f.stat().st_size for f in files)
    assert size > 2 * (shared.get("alice one", owner="alice").path / WEIGHTS_FILE).stat().st_size
    assert shared.usage("bob")[0] == 1 and shared.usage("carol") == (0, 0)


def test_a_rename_cut_short_by_a_crash_is_finished_at_the_next_start(lib, source, monkeypatch):
    lib.publish(source, "before")
    real = Library._set_name
    crashes = []

    def crash_once(folder, name):
        if not crashes:
            crashes.append(name)
            raise OSError("power cut")
        real(folder, name)

    monkeypatch.setattr(Library, "_set_name", staticmethod(crash_once))
    with pytest.raises(OSError, match="power cut"):
        lib.rename("before", "after")
    journal = lib.root / ".rename-after.json"
    meta = lambda name: json.loads((lib.root / name / CONFIG_FILE).read_text())  # noqa: E731
    assert journal.is_file() and meta("after")["name"] == "before"  # half done: moved, not renamed inside
    restarted = Library(lib.root.parent)
    assert meta("after")["name"] == "after" and not journal.exists()
    assert restarted.names() == ["after"] and restarted.get("after").meta["name"] == "after"
    # A journal whose folder never moved (a crash before the first move) is rolled back: nothing changes.
    (lib.root / ".rename-other.json").write_text(json.dumps({"old": "after", "new": "other"}))
    assert Library(lib.root.parent).names() == ["after"] and not (lib.root / ".rename-other.json").exists()
    (lib.root / ".rename-x.json").write_text("{broken")
    assert Library(lib.root.parent).names() == ["after"]  # a damaged journal never stops the start


def test_a_truncated_curve_line_is_skipped(lib, source, tmp_path):
    curve = tmp_path / "metrics.jsonl"
    curve.write_text('{"step": 1, "loss": 2.0}\n\n{"step": 2, "loss": 1.5}\n[3]\n{"step": 3, "lo')
    entry = lib.publish(source, "curved", curve=curve)
    assert entry.curve() == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


def test_names_typed_by_a_visitor_are_checked_not_rewritten(lib, source):
    with pytest.raises(AdapterError) as err:
        check_name("../../evil")
    assert str(err.value) == "Adapter names may use letters, digits, spaces, '_' and '-'; '../../evil' has '.' and '/'."
    with pytest.raises(AdapterError, match="Adapter names are at most 64 characters; 'aaaa.*' has 65"):
        check_name("a" * 65)
    with pytest.raises(AdapterError, match="start with a letter or digit"):
        check_name("-x")
    with pytest.raises(AdapterError, match="Type a name"):
        check_name("  ")
    assert check_name("  tech support_2 ") == "tech support_2"
    assert safe_name("../../evil") == "evil"  # internal names (a run's) are still sanitised silently
    lib.publish(source, "../../run name")
    assert lib.names() == ["run name"]
    with pytest.raises(AdapterError, match="'../../evil' has '.' and '/'"):
        lib.rename("run name", "../../evil")
    with pytest.raises(AdapterError, match="has '.'"):
        lib.upload([source / CONFIG_FILE, source / WEIGHTS_FILE], name="x.y")
    with pytest.raises(AdapterError, match="No adapter named '../run name'"):
        lib.get("../run name")
    assert lib.names() == ["run name"] and not (lib.root.parent / "evil").exists()


def test_no_server_path_in_published_or_downloaded_metadata_or_messages(lib, source, tmp_path):
    entry = lib.publish(source, "route", owner="alice")
    published = json.loads((entry.path / CONFIG_FILE).read_text())
    assert published["train_config"]["data"] == "support.csv" and published["train_config"]["val_data"] == "val.csv"
    assert "owner" not in published and published["base_model"] == "/srv/models/tiny-bert"  # serving needs it
    archive = lib.zip("route", tmp_path, owner="alice")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["route/adapter_config.json", "route/adapter_model.safetensors"]
        meta = json.loads(z.read("route/adapter_config.json"))
    assert meta["base_model"] == "tiny-bert" and meta["name"] == "route" and "owner" not in meta
    assert meta["train_config"]["data"] == "support.csv" and "/srv" not in json.dumps(meta)
    # The download still loads as an adapter.
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unzipped")
    assert load_adapter(tiny_model("bert", head="base"), tmp_path / "unzipped" / "route") == "route"
    messages = []
    bad = copy_of(source, tmp_path, "bad")
    (bad / CONFIG_FILE).write_text(MALFORMED)
    (lib.root / "broken").mkdir()
    (lib.root / "broken" / CONFIG_FILE).write_text("{}")
    (lib.root / "broken" / WEIGHTS_FILE).write_text("")
    for call in (
        lambda: lib.upload([bad / CONFIG_FILE, bad / WEIGHTS_FILE]),
        lambda: lib.upload([bad / CONFIG_FILE]),
        lambda: lib.get("broken"),
        lambda: lib.get("missing"),
        lambda: lib.rename("route", "../x"),
        lambda: lib.delete("route", owner="bob"),
    ):
        with pytest.raises(AdapterError) as err:
            call()
        messages.append(str(err.value))
    assert all(str(tmp_path) not in m and "/tmp" not in m for m in messages), messages
