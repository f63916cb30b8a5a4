"""The text encoder eager against its CUDA graphs (streamproc.generation.textgraph), on the GPU.

Builds the full-size random-weight pipeline (``random-5b``: a UMT5-XXL-sized encoder) and,
for calls of 1, 3, 4, 8 and 11 texts, reports the largest difference of any real token's
embedding between the graphed and the eager encoder, and the mean time of each over 10
calls. Run: ``python bench/gpu_text_encoder.py`` (CUDA only; JSON lines on stdout).
"""

from __future__ import annotations

import json
import sys
import time

import torch

from streamproc.generation.fullsize import build_full_random_pipeline
from streamproc.generation.textgraph import GraphedTextEncoder


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_text_encoder.py needs a CUDA device")
    dev = torch.device("cuda")
    pipe = build_full_random_pipeline(dev, torch.float16)
    encoder = pipe.text_encoder
    graphed = GraphedTextEncoder(encoder, max_tokens=512)

    def tokens(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        t = pipe.tokenizer(
            texts,
            padding="longest",
            max_length=512,
            truncation=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return t.input_ids, t.attention_mask

    with torch.inference_mode():
        for n in (1, 3, 4, 8, 11):
            texts = [
                f"prompt {k}: " + "a red fox runs through fresh snow at dawn " * (1 + k % 3)
                for k in range(n)
            ]
            ids, mask = tokens(texts)
            ref = encoder(ids.to(dev), mask.to(dev)).last_hidden_state
            graphed(ids, mask)  # records this size
            out = graphed(ids, mask)
            lens = mask.sum(1).tolist()
            diff = max(
                float((out[i, :k].float() - ref[i, :k].float()).abs().max())
                for i, k in enumerate(lens)
            )
            scale = max(float(ref[i, :k].float().abs().max()) for i, k in enumerate(lens))
            eager_s = graphed_s = 0.0
            for _ in range(10):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                encoder(ids.to(dev), mask.to(dev))
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                graphed(ids, mask)
                torch.cuda.synchronize()
                graphed_s += time.perf_counter() - t1
                eager_s += t1 - t0
            print(
                json.dumps(
                    {
                        "texts": n,
                        "tokens": int(ids.shape[1]),
                        "max_abs_diff": diff,
                        "max_abs": scale,
                        "eager_ms": round(eager_s * 100, 2),
                        "graphed_ms": round(graphed_s * 100, 2),
                        "graphs_on": graphed.enabled,
                        "recorded": graphed.recorded,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
