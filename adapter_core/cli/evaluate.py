"""`python -m adapter_core evaluate | predict | chat`: an adapter on a labelled file, on a few texts, or on
a prompt."""

from __future__ import annotations

import argparse
import json

from ..errors import AdapterError
from .errors import OK, one_line


def add_parsers(sub) -> None:
    e = sub.add_parser(
        "evaluate",
        help="accuracy, macro-F1 and per-class metrics (or loss, perplexity and answer scores) on a labelled file",
        description="Evaluate an adapter on a labelled file. For classification: accuracy, macro-F1, "
        "precision, recall and F1 per class, and the most confident mistakes (--json adds the confusion "
        "matrix, with an order of the classes that puts the biggest confusions first). For instruction "
        "adapters: loss and perplexity, and the answers to the file's instructions, the adapter's beside the "
        "bare base's, scored against its responses (ROUGE-L, chrF, exact match, loops, cut answers).",
    )
    e.add_argument("--adapter", required=True, help="adapter folder, or a run folder")
    e.add_argument("--data", required=True)
    e.add_argument("--max-length", type=int, default=128)
    e.add_argument("--show-mistakes", type=int, default=10, help="how many misclassified rows to print")
    e.add_argument("--json", action="store_true", help="print one JSON object (with the per-class report)")
    e.add_argument(
        "--oos-label",
        help="the label of the file's out-of-scope rows: adds AUROC, FPR at 95%% TPR, and the out-of-scope recall "
        "and in-scope false rejection at the router's saved threshold",
    )
    e.add_argument(
        "--max-new-tokens", type=int, default=128, help="instruction adapters: the answers' token limit (greedy)"
    )
    e.add_argument(
        "--score-pairs", type=int, default=None, help="instruction adapters: score the first N pairs (default: all)"
    )
    e.set_defaults(command_fn=cmd_evaluate)

    pr = sub.add_parser("predict", help="label a text with a classification adapter")
    pr.add_argument("--adapter", required=True)
    pr.add_argument("--text", required=True, action="append", help="repeat for several texts")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(command_fn=cmd_predict)

    c = sub.add_parser("chat", help="answer a prompt with an instruction adapter")
    c.add_argument("--adapter", help="adapter or run folder (omit with --base for the bare base model)")
    c.add_argument("--base", help="base model when no adapter is given")
    c.add_argument("--prompt", required=True)
    c.add_argument("--max-new-tokens", type=int, default=160)
    c.set_defaults(command_fn=cmd_chat)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..engine.evaluation import evaluate_file, load_with_base
    from ..engine.report import correct, format_per_class

    base, name = load_with_base(args.adapter)
    metrics = evaluate_file(base, name, args.data, args.max_length, oos_label=args.oos_label)
    scores = answer_scores(base, name, args)
    if args.json:
        print(json.dumps({**metrics, **({"answer_scores": scores} if scores else {})}))
        return OK
    report = metrics.pop("report", None)
    oos = metrics.pop("out_of_scope", None)
    for k, v in metrics.items():
        print(f"{k:>12}: {v:.4f}" if isinstance(v, float) else f"{k:>12}: {v}")
    if oos:
        print(
            f"\nout of scope ({oos['score']} score, {oos['oos_rows']} rows): AUROC {oos['auroc']:.4f}, "
            f"FPR at 95% TPR {oos['fpr_at_95_tpr']:.2%}; at the saved threshold it catches {oos['oos_recall']:.2%} "
            f"and rejects {oos['in_scope_false_rejection']:.2%} of the {oos['in_scope_rows']} in-scope rows"
        )
    if scores:
        from ..engine.answer_scores import scores_text

        print("\n" + scores_text(scores))
    if report:
        print("\n" + format_per_class(report))
        mistakes = report["misclassified"][: args.show_mistakes]
        if mistakes:
            print(f"\nmost confident mistakes ({len(mistakes)} of {report['rows'] - correct(report)}):")
        for m in mistakes:
            text = one_line(m["text"])[:100]
            print(f"  {m['confidence']:.3f}  true {m['true']}, predicted {m['predicted']}: {text}")
    return OK


def answer_scores(base, name: str, args: argparse.Namespace) -> dict | None:
    """An instruction adapter's answers to the file's pairs scored beside the bare base's (one mixed batch),
    without the answers themselves; None for other adapters."""
    from ..engine.answer_scores import ScoreSettings, score_file
    from ..inject import get_record

    if get_record(base.model, name).task != "instruction":
        return None
    if args.max_new_tokens < 1 or (args.score_pairs is not None and args.score_pairs < 1):
        raise AdapterError("--max-new-tokens and --score-pairs must be at least 1.")
    settings = ScoreSettings(max_new_tokens=args.max_new_tokens, max_pairs=args.score_pairs)
    result = score_file(base, [name, None], args.data, settings)
    return {k: v for k, v in result.items() if k != "answers"}


def cmd_predict(args: argparse.Namespace) -> int:
    from ..engine.evaluation import load_with_base
    from ..inference import classify

    base, name = load_with_base(args.adapter)
    predictions = classify(base.model, base.tokenizer, args.text, name)
    if args.json:
        rows = [
            {"text": t, "label": p.label, "confidence": p.confidence, "probabilities": p.probabilities}
            for t, p in zip(args.text, predictions, strict=True)
        ]
        print(json.dumps(rows))
        return OK
    for text, p in zip(args.text, predictions, strict=True):
        top = sorted(p.probabilities.items(), key=lambda kv: -kv[1])[:3]
        print(f"{p.label}\t{p.confidence:.3f}\t{text}")
        print("    " + ", ".join(f"{k} {v:.3f}" for k, v in top))
    return OK


def cmd_chat(args: argparse.Namespace) -> int:
    from ..catalog import load_base
    from ..engine.evaluation import load_with_base
    from ..inference import stream_generate

    if args.adapter:
        base, name = load_with_base(args.adapter)
    elif args.base:
        base, name = load_base(args.base), None
    else:
        raise AdapterError("Give --adapter (an instruction adapter or run folder), or --base for the bare model.")
    for piece in stream_generate(base.model, base.tokenizer, args.prompt, name, args.max_new_tokens):
        print(piece, end="", flush=True)
    print()
    return OK
