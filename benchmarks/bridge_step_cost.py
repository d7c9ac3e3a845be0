"""Cost of one bridge training step per rule, relative to a plain DPO step, and generation tokens/s.

Every rule's step is one forward/backward pass of the policy over the same batch of (winner, loser)
sequences — log π_t and log π_ref are precomputed — plus an optimiser step; only the scalar loss on
top differs.  The target of the issue is INPO ≤ 1.1× DPO.

    .venv/bin/python benchmarks/bridge_step_cost.py                      # tiny random Llama (seconds)
    .venv/bin/python benchmarks/bridge_step_cost.py --model smollm2      # SmolLM2-135M (minutes on a CPU)

Writes ``benchmarks/results/bridge_step_cost_<model>.{json,md}``.  Timing is wall-clock on whatever
machine runs it (reported in the files); it is never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from llm_bridge.generation import SamplingSpec, encode_prompts, generate
from llm_bridge.models import load_causal_lm, load_tokenizer
from llm_bridge.rules import build_bridge_rule
from llm_bridge.tiny import TIMED_RULES as RULES
from llm_bridge.tiny import random_pair_batch
from llm_bridge.trainer import TrainingSpec, make_optimizer, train_on_pairs


def median_ratio(seconds: list[float], dpo_seconds: list[float]) -> float:
    """The median over repeats of ``seconds`` ÷ ``dpo_seconds`` within each repeat."""
    return statistics.median(s / d for s, d in zip(seconds, dpo_seconds, strict=True))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="tiny (random Llama built offline), smollm2, or a local model path"
    )
    parser.add_argument("--pairs", type=int, default=4, help="pairs per step")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--response-tokens", type=int, default=16)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed steps per rule (median reported; rules interleaved)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on small VMs)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        path = args.model
        if args.model == "tiny":
            from llm_bridge.tiny import build_tiny_model

            path = str(build_tiny_model(Path(scratch) / "tiny", "llama", hidden_size=64, layers=4))
        start = time.perf_counter()
        model = load_causal_lm(path)
        tokenizer = load_tokenizer(path)
        load_seconds = time.perf_counter() - start

    vocab = model.config.vocab_size
    special = {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}
    n = args.pairs
    data = random_pair_batch([i for i in range(vocab) if i not in special], n, args.prompt_tokens, args.response_tokens)
    spec = TrainingSpec(optimizer="adamw", learning_rate=1e-7, epochs=1, batch_size=n, micro_batch_size=n)
    optimizer = make_optimizer(model.parameters(), spec)
    rules = {label: build_bridge_rule(name, dict(params)) for label, (name, params) in RULES.items()}

    for rule in rules.values():  # warm-up (allocator, first-call overheads)
        train_on_pairs(model, optimizer, data, rule, spec, tokenizer.pad_token_id, seed=0, progress=False)
    times = {label: [] for label in rules}
    cpu_times = {label: [] for label in rules}
    for _ in range(args.repeats):
        for label, rule in rules.items():  # interleaved, so drift affects every rule alike
            begin, begin_cpu = time.perf_counter(), time.process_time()
            train_on_pairs(model, optimizer, data, rule, spec, tokenizer.pad_token_id, seed=0, progress=False)
            times[label].append(time.perf_counter() - begin)
            cpu_times[label].append(time.process_time() - begin_cpu)
    medians = {label: statistics.median(values) for label, values in times.items()}
    cpu_medians = {label: statistics.median(values) for label, values in cpu_times.items()}
    # a rule's step ÷ DPO's step of the same repeat (interleaved, so a drift of the machine cancels), median
    ratios = {label: median_ratio(times[label], times["dpo"]) for label in times}
    cpu_ratios = {label: median_ratio(cpu_times[label], cpu_times["dpo"]) for label in cpu_times}
    load = os.getloadavg()

    prompt_ids = encode_prompts(
        tokenizer,
        ["Write one sentence about your weekend."] * 8,
        chat_template=getattr(tokenizer, "chat_template", None) is not None,
    )
    sampling = SamplingSpec(max_new_tokens=args.response_tokens, batch_size=16)
    generate(model, tokenizer, prompt_ids[:2], 1, sampling, seed=0, progress=False)  # warm-up
    generated = generate(model, tokenizer, prompt_ids, 2, sampling, seed=1, progress=False)

    name = "tiny" if args.model == "tiny" else Path(args.model).name if args.model != "smollm2" else "smollm2"
    result = {
        "model": args.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "load_seconds": load_seconds,
        "pairs_per_step": n,
        "prompt_tokens": args.prompt_tokens,
        "response_tokens": args.response_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "median_step_seconds": medians,
        "ratio_to_dpo": ratios,
        "median_step_cpu_seconds": cpu_medians,
        "cpu_ratio_to_dpo": cpu_ratios,
        "all_step_seconds": times,
        "all_step_cpu_seconds": cpu_times,
        "load_average_after": load,
        "generation": {
            "sequences": 16,
            "tokens": generated.tokens,
            "seconds": generated.seconds,
            "tokens_per_second": generated.tokens_per_second,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "device": "cpu",
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bridge_step_cost_{name}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Bridge step cost ({args.model}, {result['parameters']:,} parameters, CPU, {args.threads} thread(s))",
        "",
        f"{n} pairs per step (= {2 * n} sequences of {args.prompt_tokens} prompt + "
        f"{args.response_tokens} response tokens), "
        f"AdamW, median of {args.repeats} interleaved steps; × DPO is the median over repeats of the ratio to "
        f"DPO's step in the same repeat.  Wall-clock and process CPU time; the CPU-time "
        f"ratio is the robust one on a shared machine (load average after the run: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs).",
        "",
        "| rule | wall step (s) | wall × DPO | CPU step (s) | CPU × DPO |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {label} | {medians[label]:.4f} | {ratios[label]:.3f} | {cpu_medians[label]:.4f} | {cpu_ratios[label]:.3f} |"
        for label in rules
    ]
    lines += [
        "",
        f"Generation: {generated.tokens} tokens in {generated.seconds:.2f} s = "
        f"**{generated.tokens_per_second:.1f} tokens/s** (16 sequences, batch 16, sampling at temperature 1).",
        "",
    ]
    (out / f"bridge_step_cost_{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
