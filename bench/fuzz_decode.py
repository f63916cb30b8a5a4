"""Coverage-guided fuzzing of the record decoder (atheris, libFuzzer).

Usage:
    python bench/fuzz_decode.py -max_total_time=60 [libFuzzer flags] [CORPUS_DIR ...]

Each input is one record value. It must end as exactly one outcome: ``decode_prompt`` either
returns an event whose JSON encodes to UTF-8, or raises ``InvalidEventError`` with a known
dead-letter reason, whose dead letter (``dead_letter_for``, with ``event_id_of``) serialises.
Anything else — another exception, a failed check, an input running past ``-timeout`` — is a
crash: libFuzzer prints it, writes the input to ``crash-*`` and exits non-zero.

Built-in seeds (valid events and known hostile records) are written into the first
CORPUS_DIR, or into a new temporary folder (``$TMPDIR/streamproc-fuzz-*/corpus``, named in
libFuzzer's first lines) when none is given; the inputs libFuzzer finds are kept there too, so a
later run can continue from them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["streamproc"]):
    from streamproc.errors import InvalidEventError
    from streamproc.events import (
        DeadLetterReason,
        EventLimits,
        Origin,
        dead_letter_for,
        decode_prompt,
        event_id_of,
    )

LIMITS = EventLimits(model_id="fuzz-model", quality_classes=frozenset({"draft"}))
ORIGIN = Origin(topic="prompts", partition=0, offset=0)
REASONS = {reason.value for reason in DeadLetterReason}

SEEDS = [
    b'{"event_id": "e1", "prompt": "a red fox in the snow"}',
    b'\xef\xbb\xbf{"event_id": "e2", "prompt": "a cat", "width": 512, "height": 512, '
    b'"num_frames": 33, "num_inference_steps": 20, "guidance_scale": 4.5, "seed": 7, '
    b'"priority": 3, "tenant": "acme", "model": "fuzz-model", "negative_prompt": "blur", '
    b'"created_at": "2026-12-01T10:00:00Z", "deadline": "2026-12-01T10:05:00+01:00", '
    b'"attributes": {"cache": "refresh", "quality": "draft", "tags": ["a", {"b": [1.5, null]}]}}',
    b'{"event_id": "e3", "prompt": "p", "seed": ' + b"9" * 5000 + b"}",
    b'{"event_id": "e4", "prompt": "p", "attributes": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}",
    b'{"event_id": "e5", "prompt": "p", "guidance_scale": NaN, "width": 1e999}',
    b'{"event_id": "e6", "prompt": "p", "width": 64, "width": true}',
    b'{"event_id": "e7", "prompt": "\\ud800", "attributes": {"\\udfff": "\\ud83d\\ude00"}}',
    b'{"event_id": "e8", "prompt": "p", "num_frames": 16.0, "priority": "1"}',
    b'{"event_id": "e9", "prompt": "caf\xc3',
    b'{"event_id": "e10", "prompt": "\xff"}',
    b'[{"event_id": "e11"}]',
    b'{"event_id": "e12", "prompt": "p", "attributes": {"k\\u00e9": ["\\u00e9", 1, 2.5, true]}}',
]

# Tokens the mutator splices in (libFuzzer dictionary syntax).
TOKENS = [
    r'"\""',
    r'"{"',
    r'"["',
    r'"\\u"',
    r'"\\ud800"',
    r'"\\udc00"',
    r'"NaN"',
    r'"Infinity"',
    r'"-Infinity"',
    r'"1e999"',
    r'"99999999999999999999"',
    r'"true"',
    r'"null"',
    r'"\xef\xbb\xbf"',
    r'"\"event_id\": "',
    r'"\"prompt\": "',
    r'"\"width\": "',
    r'"\"seed\": "',
    r'"\"guidance_scale\": "',
    r'"\"attributes\": "',
    r'"\"cache\": "',
    r'"\"quality\": "',
    r'"\"created_at\": \"2026-12-01T10:00:00Z\""',
]


def check(data: bytes) -> None:
    """One input: an event that serialises, or an InvalidEventError whose letter does."""
    try:
        event = decode_prompt(data, LIMITS)
    except InvalidEventError as exc:
        if exc.reason not in REASONS:
            raise AssertionError(f"unknown reason {exc.reason!r}") from None
        letter = dead_letter_for(
            data,
            ORIGIN,
            reason=DeadLetterReason(exc.reason),
            detail=exc.detail,
            error_class=exc.error_class,
            event_id=event_id_of(data),
            worker_id="fuzz",
            max_original_bytes=1024,
        )
        letter.model_dump_json().encode("utf-8")
        return
    event.model_dump_json().encode("utf-8")
    # An accepted record has one event_id key; the dead-letter scan must not find another.
    found = event_id_of(data)
    if found not in (None, event.event_id):
        raise AssertionError(f"event_id_of found {found!r}, the event is {event.event_id!r}")


def main(argv: list[str]) -> None:
    args = list(argv)
    work = Path(tempfile.mkdtemp(prefix="streamproc-fuzz-"))
    corpora = [arg for arg in args[1:] if not arg.startswith("-")]
    if not corpora:
        corpora = [str(work / "corpus")]
        args.append(corpora[0])
    first = Path(corpora[0])
    first.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(SEEDS):
        (first / f"seed-{index:02d}").write_bytes(seed)
    if not any(arg.startswith("-dict=") for arg in args):
        tokens = work / "tokens.dict"
        tokens.write_text("\n".join(TOKENS) + "\n")
        args.append(f"-dict={tokens}")
    if not any(arg.startswith("-timeout=") for arg in args):
        args.append("-timeout=10")  # seconds for one input: far beyond any linear-time decode
    atheris.Setup(args, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
