"""The OpenAI-compatible server under concurrent clients, side by side in one run (SmolLM2-135M).

    python bench/serve.py [--adapters 1,8,32] [--clients 32] [--requests-per-client 1] [--rounds 2]
                          [--max-tokens 32] [--fast]

Modes, for the adapter counts N of --adapters:
- ours, batched: N random instruction adapters (bottleneck 64, seeded) in a temporary library, served
  by the real server (`python -m adapter_core serve`, its default --max-batch 32) in a subprocess;
- ours, one at a time: the same server with --max-batch 1 and the largest N (the floor);
- PEFT: the same base with as many LoRA adapters (r=16 on q_proj and v_proj, B random), one request
  at a time, since PEFT's `set_adapter` switches the whole model. It runs in-process, without HTTP,
  which flatters it slightly; its latencies are each request's service time alone (queueing behind a
  serial server says nothing new).

Every server starts before the clock does and is warmed (every adapter loaded, one request each).
Each round then drives every mode in turn with --clients threads that each send --requests-per-client
chat requests back to back (each when the previous answer is in), round-robin over the adapters, with
distinct prompts, greedy; the servers not being driven sit idle. A first, untimed round warms every
mode at full length. Interleaving the rounds spreads the noise of a shared machine over every mode
alike. Throughput: requests and generated tokens (`usage.completion_tokens`) per second of wall time,
summed over the timed rounds; latency: each request's time from sending to its whole answer.

Targets, in requests/s: N=32 batched >= 0.8 x N=1; batched >= 3 x one at a time. The batched answers
are checked against the same requests served one at a time (greedy: they should be equal), and the
adapters against the bare base (they should change the answers). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_name  # noqa: E402

from adapter_core import (  # noqa: E402
    AdapterConfig,
    adapter_parameters,
    add_adapter,
    format_prompt,
    load_base,
    save_adapter,
)
from adapter_core.inference import prompt_ids, stop_token_ids  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE = "smollm2-135m-instruct"
# The server loads its bases with `load_base(name)`, which stays on the CPU whatever the machine has;
# the PEFT baseline runs on the same device by default so that the comparison is like for like.
SERVER_DEVICE = "cpu"
BATCHED = "ours, batched (--max-batch 32)"
ONE_AT_A_TIME = "ours, one at a time (--max-batch 1)"
PEFT = "PEFT LoRA, one at a time, in-process"
QUESTIONS = [
    "My order number {n} has not arrived yet. What should I do?",
    "How do I return the jacket from order {n}? It is the wrong size.",
    "I was charged twice for invoice {n}. Can you explain the refund process?",
    "Can I change the delivery address for parcel {n} before it ships?",
    "My discount code SAVE{n} does not work at checkout. Why not?",
    "How long does a refund take for order {n} paid by credit card?",
    "The blender from order {n} arrived broken. How do I get a replacement?",
    "Can you tell me the opening hours of store number {n}?",
]


@dataclass(frozen=True)
class Request:
    key: int  # the request's number: the same request in every mode
    adapter: str
    question: str


@dataclass
class Result:
    key: int
    latency_s: float
    tokens: int
    text: str


Drive = Callable[[list[list[Request]]], tuple[float, list[Result]]]


@dataclass
class Mode:
    adapters: int
    label: str
    drive: Drive  # serves one round's requests; returns its wall time and results
    walls: list[float] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)


def plan(clients: int, per_client: int, adapters: list[str], first: int = 0) -> list[list[Request]]:
    """Each client's requests, in order. Request j of client c is number first + j * clients + c, so the
    requests in flight at any moment cover every adapter evenly."""
    out = []
    for c in range(clients):
        mine = []
        for j in range(per_client):
            k = first + j * clients + c
            mine.append(Request(k, adapters[k % len(adapters)], question(k)))
        out.append(mine)
    return out


def question(k: int) -> str:
    """Request k's question: a customer-service one with a number in it, so no two are the same."""
    return QUESTIONS[k % len(QUESTIONS)].format(n=1000 + 37 * k)


# The adapters ----------------------------------------------------------------------------------------
def adapter_names(n: int) -> list[str]:
    return [f"dept{i:02d}" for i in range(n)]


def write_library(folder: Path, n: int, bottleneck: int, scale: float, seed: int = 0) -> None:
    """N instruction adapters with small random weights: trained-looking, not the identity."""
    base = load_base(BASE)
    g = torch.Generator().manual_seed(seed)
    for name in adapter_names(n):
        add_adapter(base.model, name, AdapterConfig(bottleneck=bottleneck), task="instruction")
        with torch.no_grad():
            for p in adapter_parameters(base.model, name).values():
                p.copy_(torch.randn(p.shape, generator=g) * scale)
        save_adapter(base.model, name, folder / name, extra={"base_model": BASE})


def sub_library(full: Path, folder: Path, n: int) -> Path:
    """A library of the first N adapters of `full`, as links: written once, served as N."""
    folder.mkdir()
    for name in adapter_names(n):
        (folder / name).symlink_to(full / name, target_is_directory=True)
    return folder


# The server ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(library: Path, max_batch: int, log_path: Path) -> Iterator[str]:
    """The real server in a subprocess, healthy, at the URL yielded; always stopped on the way out."""
    port = free_port()
    cmd = [sys.executable, "-m", "adapter_core", "serve", "--library", str(library), "--port", str(port)]
    cmd += ["--max-in-flight", "256"]  # every client of the benchmark comes from this one address
    if max_batch != 32:  # 32: the server's default, what a user gets
        cmd += ["--max-batch", str(max_batch)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"The server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"The server did not answer /health within {timeout_s:.0f} s")


def ask(client: httpx.Client, url: str, req: Request, max_tokens: int) -> Result:
    body = {
        "model": req.adapter,
        "messages": [{"role": "user", "content": req.question}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    t = time.perf_counter()
    r = client.post(f"{url}/v1/chat/completions", json=body)
    latency = time.perf_counter() - t
    r.raise_for_status()
    data = r.json()
    return Result(req.key, latency, data["usage"]["completion_tokens"], data["choices"][0]["message"]["content"])


def warm(url: str, names: list[str]) -> None:
    """Load every adapter onto the server's base (and run its first `generate`) before the clock starts:
    the figures are for a server in steady state, not for its first requests."""
    drive(url, [[Request(-1 - i, name, "Hello.")] for i, name in enumerate(names)], 1)


def drive(url: str, requests: list[list[Request]], max_tokens: int) -> tuple[float, list[Result]]:
    """Every client sends its requests back to back, each when the previous answer is in; all start
    together. Returns the wall time from the start to the last answer, and every result."""
    results: list[Result] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(requests) + 1)

    def client_loop(mine: list[Request]) -> None:
        with httpx.Client(timeout=None) as client:
            start.wait()
            try:
                for req in mine:
                    res = ask(client, url, req, max_tokens)
                    with lock:
                        results.append(res)
            except BaseException as e:  # reported after the run: a failed request must not hang it
                errors.append(e)

    threads = [threading.Thread(target=client_loop, args=(mine,)) for mine in requests]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed; the first: {errors[0]!r}")
    return wall, results


def server_mode(stack: ExitStack, library: Path, n: int, max_batch: int, max_tokens: int) -> Drive:
    url = stack.enter_context(server(library, max_batch, library.parent / f"server-{n}-{max_batch}.log"))
    warm(url, adapter_names(n))
    return lambda requests: drive(url, requests, max_tokens)


# The PEFT baseline -----------------------------------------------------------------------------------
class Peft:
    """The same base with N LoRA adapters (r=16 on q_proj and v_proj), B random so none is the
    identity, serving one request at a time as a user of PEFT would: `set_adapter`, then `generate`."""

    def __init__(self, n: int, scale: float, device: str, max_tokens: int, seed: int = 0):
        from peft import LoraConfig, get_peft_model

        base = load_base(BASE)  # a fresh plain LlamaForCausalLM: no adapter of ours is injected into it
        names = adapter_names(n)
        config = lambda: LoraConfig(r=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")  # noqa: E731
        model = get_peft_model(base.model, config(), adapter_name=names[0])
        for name in names[1:]:
            model.add_adapter(name, config())
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for key, p in model.named_parameters():
                if "lora_B" in key:
                    p.copy_(torch.randn(p.shape, generator=g) * scale)
        self.model, self.tok, self.device, self.max_tokens = model.to(device).eval(), base.tokenizer, device, max_tokens
        self.stops = stop_token_ids(self.tok, model)
        self.serve(Request(-1, names[0], "Hello."))  # warm-up, untimed

    def drive(self, requests: list[list[Request]]) -> tuple[float, list[Result]]:
        """Every request alone, in the order they would arrive (each client's first, then second, ...)."""
        order = sorted((r for mine in requests for r in mine), key=lambda r: r.key)
        t0 = time.perf_counter()
        results = [self.serve(r) for r in order]
        return time.perf_counter() - t0, results

    def serve(self, req: Request, adapter: bool = True) -> Result:
        ids = torch.tensor([prompt_ids(self.tok, format_prompt(self.tok, req.question))], device=self.device)
        t = time.perf_counter()
        self.model.set_adapter(req.adapter)
        with torch.inference_mode(), nullcontext() if adapter else self.model.disable_adapter():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.max_tokens,
                do_sample=False,
                eos_token_id=self.stops,
                pad_token_id=self.tok.pad_token_id,
            )
        if self.device == "cuda":
            torch.cuda.synchronize()
        latency = time.perf_counter() - t
        new = [i for i in out[0, ids.shape[1] :].tolist() if i not in self.stops]
        return Result(req.key, latency, len(new), self.tok.decode(new, skip_special_tokens=True))


# Reporting -------------------------------------------------------------------------------------------
def row(mode: Mode) -> dict:
    latencies = sorted(r.latency_s for r in mode.results)
    tokens, wall = sum(r.tokens for r in mode.results), sum(mode.walls)
    return {
        "adapters": mode.adapters,
        "mode": mode.label,
        "requests": len(mode.results),
        "completion_tokens": tokens,
        "wall_s": round(wall, 2),
        "req_per_s": round(len(mode.results) / wall, 3),
        "tok_per_s": round(tokens / wall, 2),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "round_walls_s": [round(w, 2) for w in mode.walls],  # their spread shows how noisy the machine was
    }


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def print_table(rows: list[dict]) -> None:
    print(
        f"{'adapters':>8}  {'mode':<36} {'requests':>8} {'wall s':>8} {'req/s':>7} {'tok/s':>7} "
        f"{'p50 s':>7} {'p95 s':>7}  round walls s"
    )
    for r in rows:
        print(
            f"{r['adapters']:>8}  {r['mode']:<36} {r['requests']:>8} {r['wall_s']:>8.2f} {r['req_per_s']:>7.3f} "
            f"{r['tok_per_s']:>7.2f} {r['p50_s']:>7.3f} {r['p95_s']:>7.3f}  {r['round_walls_s']}"
        )


def ratio(a: dict, b: dict) -> dict:
    """a over b, in generated tokens/s and in requests/s (the targets' measure)."""
    return {
        "tok_per_s": round(a["tok_per_s"] / b["tok_per_s"], 3),
        "req_per_s": round(a["req_per_s"] / b["req_per_s"], 3),
    }


def compare(results: list[Result], reference: dict[int, str]) -> dict:
    """How many answers equal the reference's answer to the same request."""
    shared = [r for r in results if r.key in reference]
    differ = [r.key for r in shared if reference[r.key] != r.text]
    return {"compared": len(shared), "equal": len(shared) - len(differ), "differing_keys": differ[:10]}


def load() -> str:
    """The machine's load average: other work on a shared machine slows every figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# The run ---------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapters", help="comma-separated adapter counts; the largest also gets the floor and PEFT")
    ap.add_argument("--clients", type=int, help="concurrent clients")
    ap.add_argument("--requests-per-client", type=int, help="requests each client sends back to back per round")
    ap.add_argument("--rounds", type=int, help="rounds, each driving every mode in turn")
    ap.add_argument("--max-tokens", type=int, help="max_tokens of every request")
    ap.add_argument("--bottleneck", type=int, default=64)
    ap.add_argument("--scale", type=float, default=0.02, help="std of our adapters' random weights")
    ap.add_argument("--lora-scale", type=float, default=0.2, help="std of the LoRA adapters' random B")
    ap.add_argument("--peft-device", default=SERVER_DEVICE, help="where PEFT runs (default: where the server runs)")
    ap.add_argument("--no-peft", action="store_true")
    ap.add_argument("--fast", action="store_true", help="a small run that checks the script (run_all --quick)")
    args = ap.parse_args()
    # Defaults: 1,8,32 adapters, 32 clients x 1 request x 2 rounds, 32 tokens: about 8 minutes on 2 idle
    # cores. --fast: 1 and 8 adapters, 8 clients x 1 request x 1 round, 8 tokens.
    defaults = {"adapters": "1,8,32", "clients": 32, "requests_per_client": 1, "rounds": 2, "max_tokens": 32}
    if args.fast:
        defaults = {"adapters": "1,8", "clients": 8, "requests_per_client": 1, "rounds": 1, "max_tokens": 8}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    # A plain SIGTERM (a timeout, a killed parent) would skip the `finally` blocks that stop the servers.
    signal.signal(signal.SIGTERM, stopped)
    counts = sorted({int(x) for x in args.adapters.split(",")})
    most = counts[-1]
    started = time.perf_counter()
    print(
        f"SmolLM2-135M, {args.clients} clients x {args.requests_per_client} requests x {args.rounds} rounds, "
        f"max_tokens {args.max_tokens}, greedy; adapters of bottleneck {args.bottleneck}; {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads; server on {SERVER_DEVICE}, PEFT on {args.peft_device}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp, ExitStack() as stack:
        full = Path(tmp) / f"lib{most}"
        write_library(full, most, args.bottleneck, args.scale)
        modes = []
        for n in counts:
            library = full if n == most else sub_library(full, Path(tmp) / f"lib{n}", n)
            modes.append(Mode(n, BATCHED, server_mode(stack, library, n, 32, args.max_tokens)))
        modes.append(Mode(most, ONE_AT_A_TIME, server_mode(stack, full, most, 1, args.max_tokens)))
        peft = None if args.no_peft else Peft(most, args.lora_scale, args.peft_device, args.max_tokens)
        if peft is not None:
            modes.append(Mode(most, PEFT, peft.drive))
        print(f"set up in {time.perf_counter() - started:.0f} s; load average now {load()}", flush=True)
        size = args.clients * args.requests_per_client
        # Round 0 is a warm-up, untimed: the first full-length batches of a fresh process run up to twice
        # as slow (new tensor sizes to allocate), and steady state is what a server lives in.
        for r in range(args.rounds + 1):
            for mode in modes:
                requests = plan(args.clients, args.requests_per_client, adapter_names(mode.adapters), r * size)
                wall, results = mode.drive(requests)
                if r > 0:
                    mode.walls.append(wall)
                    mode.results += results
                what = f"round {r}" if r else "warm-up round"
                print(f"{what}, {mode.adapters} adapters, {mode.label}: {wall:.2f} s (load {load()})", flush=True)
        base = bare_answers(peft, range(size, size + min(8, size))) if peft is not None else None
    rows = [row(m) for m in modes]
    print(f"\nthe whole run took {time.perf_counter() - started:.0f} s")
    print_table(rows)
    print(json.dumps(summarise(rows, modes, counts, base, args)))


def stopped(signum: int, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    print("bench/serve.py: stopped by SIGTERM; stopping its servers", file=sys.stderr, flush=True)
    sys.exit(143)


def bare_answers(peft: Peft, keys: range) -> dict[int, str]:
    """The bare base's answers to a few of the requests (PEFT with its adapters off is the plain model)."""
    return {k: peft.serve(Request(k, adapter_names(1)[0], question(k)), adapter=False).text for k in keys}


def summarise(rows: list[dict], modes: list[Mode], counts: list[int], base: dict | None, args) -> dict:
    lo, hi = counts[0], counts[-1]
    batched = {m.adapters: (r, m) for r, m in zip(rows, modes, strict=True) if m.label == BATCHED}
    alone_row, alone = next((r, m) for r, m in zip(rows, modes, strict=True) if m.label == ONE_AT_A_TIME)
    ratios = {f"batched_{hi}_over_{lo}": ratio(batched[hi][0], batched[lo][0])}
    ratios[f"batched_{hi}_over_one_at_a_time"] = ratio(batched[hi][0], alone_row)
    scale, speedup = ratios[f"batched_{hi}_over_{lo}"], ratios[f"batched_{hi}_over_one_at_a_time"]
    # The targets are judged in requests/s: a batch decodes until its longest answer ends, so at a fixed
    # max_tokens every request costs the same, while tokens/s also counts the answers that one set of
    # random adapters happens to end early.
    met = {"scale": scale["req_per_s"] >= 0.8, "batching": speedup["req_per_s"] >= 3}
    print(
        f"\n{hi} adapters / {lo} adapter, batched: {scale['req_per_s']} x the requests/s ({scale['tok_per_s']} x the "
        f"tokens/s); target >= 0.8: {'met' if met['scale'] else 'NOT met'}"
    )
    print(
        f"{hi} adapters batched / one at a time: {speedup['req_per_s']} x the requests/s ({speedup['tok_per_s']} x "
        f"the tokens/s); target >= 3: {'met' if met['batching'] else 'NOT met'}"
    )
    peft = next((r for r in rows if r["mode"] == PEFT), None)
    if peft is not None:
        vs = ratios[f"ours_{hi}_over_peft_{hi}"] = ratio(batched[hi][0], peft)
        print(
            f"ours ({hi} adapters, batched, over HTTP) / PEFT ({hi} LoRA adapters, one at a time, in-process, no "
            f"HTTP): {vs['req_per_s']} x the requests/s ({vs['tok_per_s']} x the tokens/s). PEFT's p50/p95 are "
            "each request's service time alone, without queueing."
        )
    same = compare(batched[hi][1].results, {r.key: r.text for r in alone.results})
    print(f"batched answers ({hi} adapters) equal to the same request served one at a time: {_count(same)}")
    checks = {"batched_equal_to_one_at_a_time": same}
    if base is not None:
        ours, theirs = compare(batched[hi][1].results, base), compare(modes[-1].results, base)
        print(
            f"answers equal to the bare base's (should be few: the adapters are not the identity): ours "
            f"{_count(ours)}, PEFT {_count(theirs)}"
        )
        checks |= {"ours_equal_to_bare_base": ours, "peft_equal_to_bare_base": theirs}
    return {
        "bench": "serve",
        "rows": rows,
        "ratios": ratios,
        "targets_met": {
            f"batched_{hi}_over_{lo}_ge_0.8": met["scale"],
            "batched_over_one_at_a_time_ge_3": met["batching"],
        },
        "checks": checks,
        **{k: getattr(args, k) for k in ("clients", "requests_per_client", "rounds", "max_tokens", "bottleneck")},
        "server_device": SERVER_DEVICE,
        "peft_device": args.peft_device,
        "device": device_name(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_after": load(),
    }


def _count(check: dict) -> str:
    return f"{check['equal']} of {check['compared']}" + (
        f" (differing request keys: {check['differing_keys']})" if check["differing_keys"] else ""
    )


if __name__ == "__main__":
    main()
