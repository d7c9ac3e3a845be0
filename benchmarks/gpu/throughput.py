"""GPU throughput of the bridge: generation tokens/s, one training step per rule against DPO, peak memory.

For random-initialised Llama models with SmolLM2-135M's configuration and with a ~1B configuration
(Llama-3.2-1B's shape), on one device (CUDA when present):

* generation tokens/s: ``model.generate`` with the bridge's exact sampling config
  (:func:`llm_bridge.generation.exact_generation_config`: π itself, temperature 1, no processors), a
  batch of prompts, ``--new-tokens`` each, bf16 autocast on CUDA;
* one optimiser step per rule on the **same** batch of pairs (:func:`llm_bridge.trainer.train_on_pairs`,
  AdamW, float32 master weights, bf16 autocast on CUDA), median of ``--repeats`` interleaved steps, and
  the ratio to DPO: a rule's step ÷ DPO's step of the same repeat, the median over repeats (the issue's
  target: INPO ≤ 1.05× DPO);
* peak device memory of a DPO step and of each APO form: ``parameters`` (host copy of θ̂_t, the step,
  the extrapolation θ ← θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t)) and ``implicit_reference`` (one extra no-grad
  scoring pass with θ̂_{t−1} swapped in, then the step), and the optimiser state's size.

``--tiny`` replaces both models by a 2-layer toy of the same family (the CPU dry run of
``benchmarks/gpu/run.sh --dry-run``).  Writes ``<out>/gpu_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from llm_bridge.apo import extrapolate_parameters
from llm_bridge.generation import SamplingSpec, exact_generation_config
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.models import save_weights, swapped_weights, trainable_state
from llm_bridge.precision import precision_for
from llm_bridge.rules import build_bridge_rule
from llm_bridge.tiny import TIMED_RULES as RULES
from llm_bridge.tiny import random_pair_batch
from llm_bridge.trainer import TrainingSpec, make_optimizer, train_on_pairs

#: Llama shapes (random weights): SmolLM2-135M's config.json and Llama-3.2-1B's.
CONFIGS = {
    "smollm2_135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=2048,
        rope_theta=100000.0,
        tie_word_embeddings=True,
    ),
    "llama_1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=2048,
        rope_theta=500000.0,
        tie_word_embeddings=True,
    ),
}
TINY = {
    "tiny_smollm2_shape": dict(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=3,
        num_key_value_heads=1,
        vocab_size=512,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    ),
    "tiny_llama_shape": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=640,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    ),
}
PAD, EOS = 0, 1


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(shape: dict, device: torch.device) -> torch.nn.Module:
    """A random-initialised float32 LlamaForCausalLM of ``shape`` on ``device`` (seed 0)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(pad_token_id=PAD, bos_token_id=2, eos_token_id=EOS, **shape)
    return LlamaForCausalLM(config).to(device).eval()


def generation_rate(model, device, vocab: int, batch: int, prompt_tokens: int, new_tokens: int, autocast) -> dict:
    """Tokens/s of sampling ``batch`` × ``new_tokens`` from π (exact config), after one warm-up call."""
    config = exact_generation_config(SamplingSpec(max_new_tokens=new_tokens, batch_size=batch), PAD, [EOS])
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, vocab, (batch, prompt_tokens), generator=generator).to(device)
    mask = torch.ones_like(prompt)

    def run():
        with torch.no_grad(), autocast() if autocast else torch.autocast(device.type, enabled=False):
            return model.generate(input_ids=prompt, attention_mask=mask, generation_config=config)

    run()
    synchronise(device)
    start = time.perf_counter()
    output = run()
    synchronise(device)
    seconds = time.perf_counter() - start
    produced = output[:, prompt_tokens:]
    tokens = int((produced != PAD).sum())
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds, "batch": batch}


def step_times(model, data, spec: TrainingSpec, precision, repeats: int, device) -> dict:
    """Median seconds of one optimiser step per rule on ``data`` (rules interleaved; one warm-up each), and each
    rule's ratio to DPO: its step ÷ DPO's step within one repeat, the median (and min, max) over repeats."""
    optimizer = make_optimizer(model.parameters(), spec)
    rules = {label: build_bridge_rule(name, dict(params)) for label, (name, params) in RULES.items()}

    def step(rule):
        train_on_pairs(model, optimizer, data, rule, spec, PAD, seed=0, progress=False, precision=precision)

    for rule in rules.values():
        step(rule)
    times = {label: [] for label in rules}
    for _ in range(repeats):
        for label, rule in rules.items():
            synchronise(device)
            begin = time.perf_counter()
            step(rule)
            synchronise(device)
            times[label].append(time.perf_counter() - begin)
    medians = {label: statistics.median(v) for label, v in times.items()}
    ratios = {label: [t / d for t, d in zip(times[label], times["dpo"], strict=True)] for label in times}
    state_bytes = sum(
        t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )
    return {
        "median_seconds": medians,
        "ratio_to_dpo": {label: statistics.median(values) for label, values in ratios.items()},
        "ratio_to_dpo_spread": {label: [min(values), max(values)] for label, values in ratios.items()},
        "all_seconds": times,
        "adamw_state_bytes": state_bytes,
    }


def peak_memory(model, data, spec: TrainingSpec, precision, device, scratch: Path) -> dict:
    """Peak device bytes of a DPO step and of each APO form's iteration work (CUDA; NaN elsewhere)."""
    if device.type != "cuda":
        return {"dpo_step": float("nan"), "apo_parameters": float("nan"), "apo_implicit_reference": float("nan")}
    optimizer = make_optimizer(model.parameters(), spec)
    dpo = build_bridge_rule("dpo", {"beta": 0.1})
    apo = build_bridge_rule("apo", {"base": "dpo", "beta": 0.1, "alpha": 0.3})
    implicit = build_bridge_rule("apo", {"base": "dpo", "beta": 0.1, "alpha": 0.3, "form": "implicit_reference"})
    previous_path = scratch / "previous.safetensors"
    save_weights(model, previous_path)

    def measured(work) -> float:
        synchronise(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        work()
        synchronise(device)
        return float(torch.cuda.max_memory_allocated(device))

    def train(rule):
        train_on_pairs(model, optimizer, data, rule, spec, PAD, seed=0, progress=False, precision=precision)

    def parameters_form():
        previous = {k: v.detach().to("cpu", copy=True) for k, v in trainable_state(model).items()}
        train(apo)
        extrapolate_parameters(model, previous, 0.3)

    def implicit_form():
        prompts = data.prompt_ids + data.prompt_ids
        responses = data.winner_ids + data.loser_ids
        with swapped_weights(model, previous_path):
            batched_sequence_logprobs(model, prompts, responses, PAD, 16, autocast=precision.autocast)
        train(implicit)

    result = {
        "dpo_step": measured(lambda: train(dpo)),
        "apo_parameters": measured(parameters_form),
        "apo_implicit_reference": measured(implicit_form),
    }
    return result


def measure(name: str, shape: dict, args, device: torch.device, scratch: Path) -> dict:
    model = build_model(shape, device)
    parameters = sum(p.numel() for p in model.parameters())
    precision = precision_for("float32", device.type, bf16=True)  # bf16 autocast on CUDA, float32 masters
    spec = TrainingSpec(
        optimizer="adamw", learning_rate=1e-7, batch_size=args.pairs, micro_batch_size=args.pairs, bf16=True
    )
    data = random_pair_batch(range(3, shape["vocab_size"]), args.pairs, args.prompt_tokens, args.response_tokens)
    generation = generation_rate(
        model, device, shape["vocab_size"], args.batch, args.prompt_tokens, args.new_tokens, precision.autocast
    )
    steps = step_times(model, data, spec, precision, args.repeats, device)
    memory = peak_memory(model, data, spec, precision, device, scratch)
    masters = sorted({str(p.dtype) for p in model.parameters()})
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "name": name,
        "shape": shape,
        "parameters": parameters,
        "master_dtypes": masters,
        "autocast": str(precision.autocast_dtype),
        "generation": generation,
        "steps": steps,
        "peak_memory_bytes": memory,
    }


def markdown(report: dict) -> str:
    lines = [
        f"# Bridge throughput on {report['device']}",
        "",
        f"{report['when']}; torch {report['torch']}, transformers {report['transformers']}"
        + (" — **dry run (tiny models, CPU)**, not a GPU measurement" if report["tiny"] else ""),
        f"Random-initialised Llama models; AdamW, float32 master weights, autocast {report['models'][0]['autocast']};"
        f" {report['pairs']} pairs per step ({report['prompt_tokens']} prompt + {report['response_tokens']} response"
        f" tokens each), median of {report['repeats']} interleaved steps; generation: batch {report['batch']},"
        f" {report['new_tokens']} new tokens, sampling from π (temperature 1, no processors).",
        "",
    ]
    for model in report["models"]:
        steps = model["steps"]
        inpo = steps["ratio_to_dpo"]["inpo"]
        lines += [
            f"## {model['name']} ({model['parameters'] / 1e6:.1f} M parameters; "
            f"masters {', '.join(model['master_dtypes'])})",
            "",
            f"Generation: **{model['generation']['tokens_per_second']:.0f} tokens/s** "
            f"({model['generation']['tokens']} tokens in {model['generation']['seconds']:.2f} s).",
            "",
            "| rule | step (s), median | × DPO: median over repeats of the ratio within one repeat (min–max) |",
            "|---|---|---|",
        ]
        lines += [
            f"| {label} | {steps['median_seconds'][label]:.4f} | {steps['ratio_to_dpo'][label]:.3f} "
            f"({steps['ratio_to_dpo_spread'][label][0]:.3f}–{steps['ratio_to_dpo_spread'][label][1]:.3f}) |"
            for label in steps["median_seconds"]
        ]
        memory = model["peak_memory_bytes"]
        gib = 2.0**30
        lines += [
            "",
            f"INPO / DPO = {inpo:.3f} (target ≤ 1.05: {'met' if inpo <= 1.05 else 'NOT met'}).",
            "",
            "| peak device memory | GiB |",
            "|---|---|",
            f"| DPO step | {memory['dpo_step'] / gib:.2f} |",
            f"| APO `parameters` (host copy + step + extrapolation) | {memory['apo_parameters'] / gib:.2f} |",
            f"| APO `implicit_reference` (θ̂_(t−1) scoring + step) | {memory['apo_implicit_reference'] / gib:.2f} |",
            f"| AdamW state (exp_avg + exp_avg_sq) | {steps['adamw_state_bytes'] / gib:.2f} |",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy models of the same family (CPU dry run)")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--response-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="generation batch")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    args = parser.parse_args(argv)
    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
    configs = TINY if args.tiny else CONFIGS
    models = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, shape in configs.items():
            models.append(measure(name, shape, args, device, Path(scratch)))
            print(f"{name}: done", flush=True)
    cpu = platform.processor() or platform.machine()
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu})",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tiny": args.tiny,
        "pairs": args.pairs,
        "prompt_tokens": args.prompt_tokens,
        "response_tokens": args.response_tokens,
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "models": models,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_throughput.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "gpu_throughput.md").write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
