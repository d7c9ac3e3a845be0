"""The bridge's numerics on the accelerator: checks that fail loudly, run by ``benchmarks/gpu/run.sh``.

On the device (CUDA when present, else CPU for the dry run), with a tiny local Llama (``llm_bridge.tiny``):

1. **log-probs**: the bridge's response-only, chunked sequence log-probs in float32 on the device equal
   the full-logit computation in float64 on the CPU (1e-3 nats per sequence);
2. **mixed precision**: one AdamW step of the INPO loss under ``model.dtype = "bfloat16"`` (bf16 autocast,
   float32 master weights): the weights stay float32, the loss is finite, the weights move, and the bf16
   loss is within 5% of the float32 loss on the same batch;
3. **exact sampling**: with a ``generation_config.json`` that sets a repetition penalty and a list of EOS
   ids, the bridge's ``generate`` on the device stops every response at its first EOS id, and the
   per-step scores HF returns equal log π of the sampled tokens (the penalty was not applied).

Writes ``<out>/gpu_cuda_checks.md`` and exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback
from pathlib import Path

import torch

from llm_bridge.generation import SamplingSpec, encode_prompts, exact_generation_config, generate
from llm_bridge.logprobs import sequence_logprobs
from llm_bridge.models import load_causal_lm, load_tokenizer
from llm_bridge.precision import precision_for
from llm_bridge.rules import build_bridge_rule
from llm_bridge.tiny import build_tiny_model
from llm_bridge.trainer import PairTensors, TrainingSpec, make_optimizer, train_on_pairs


def full_logprobs_cpu64(model, prompts, responses) -> torch.Tensor:
    """Σ log π(y_i | x, y_<i) from the full logits, float64 on the CPU (one sequence at a time)."""
    reference = model.to("cpu", torch.float64)
    values = []
    with torch.no_grad():
        for prompt, response in zip(prompts, responses):
            logits = reference(torch.tensor([prompt + response])).logits[0].log_softmax(-1)
            values.append(sum(logits[len(prompt) - 1 + i, token] for i, token in enumerate(response)))
    return torch.stack(values)


def check_logprobs(directory: Path, device: torch.device) -> str:
    model = load_causal_lm(str(directory)).to(device).eval()
    tokenizer = load_tokenizer(str(directory))
    prompts = encode_prompts(tokenizer, ["the movie was", "i love this", "tell me a story"], chat_template=False)
    responses = [tokenizer.encode("good and great", add_special_tokens=False)] * 3
    responses[1] = tokenizer.encode("the worst food ever", add_special_tokens=False)
    with torch.no_grad():
        bridge = sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id, device=device).double().cpu()
    exact = full_logprobs_cpu64(model, prompts, responses)
    error = float((bridge - exact).abs().max())
    assert error < 1e-3, f"response-only log-probs on {device} differ from float64 full logits by {error}"
    return f"max |Δ| = {error:.2e} nats over {len(prompts)} sequences"


def pairs(tokenizer) -> PairTensors:
    prompts = encode_prompts(tokenizer, ["the movie was", "what a nice", "this is the", "she said it"], False)
    good = [tokenizer.encode(t, add_special_tokens=False) for t in ("great", "lovely place", "excellent", "fine")]
    bad = [tokenizer.encode(t, add_special_tokens=False) for t in ("bad", "awful day", "terrible", "sad")]
    values = {k: torch.full((4,), -8.0, dtype=torch.float64) for k in ("reference_w", "reference_l")}
    values.update({k: torch.full((4,), -8.0, dtype=torch.float64) for k in ("previous_w", "previous_l")})
    values.update(
        win_rate_w=torch.full((4,), 0.7, dtype=torch.float64),
        win_rate_l=torch.full((4,), 0.3, dtype=torch.float64),
        preference=torch.full((4,), 0.8, dtype=torch.float64),
        weight=torch.ones(4, dtype=torch.float64),
    )
    return PairTensors(prompts, good, bad, values)


def check_mixed_precision(directory: Path, device: torch.device) -> str:
    tokenizer = load_tokenizer(str(directory))
    rule = build_bridge_rule("inpo", {"eta": 0.5, "tau": 0.1})
    spec = TrainingSpec(optimizer="adamw", learning_rate=1e-3, batch_size=4, micro_batch_size=2)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        precision = precision_for(dtype, device.type, bf16=False)
        model = load_causal_lm(str(directory), precision.load_dtype).to(device)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = make_optimizer(model.parameters(), spec)
        stats = train_on_pairs(
            model,
            optimizer,
            pairs(tokenizer),
            rule,
            spec,
            tokenizer.pad_token_id,
            0,
            progress=False,
            precision=precision,
        )
        dtypes = {str(p.dtype) for p in model.parameters()}
        assert dtypes == {"torch.float32"}, f"{dtype}: master weights became {dtypes}"
        moved = max(float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters())
        assert moved > 0, f"{dtype}: the step did not move the weights"
        losses[dtype] = stats.loss_first
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    relative = abs(losses["bfloat16"] - losses["float32"]) / abs(losses["float32"])
    assert relative < 0.05, f"bf16 autocast loss {losses['bfloat16']} vs float32 {losses['float32']}"
    return f"masters float32 after the step; loss float32 {losses['float32']:.5f}, bf16 {losses['bfloat16']:.5f}"


def check_exact_sampling(scratch: Path, device: torch.device) -> str:
    directory = build_tiny_model(
        scratch / "penalised", generation_config={"repetition_penalty": 3.0, "eos_token_id": [3, 5]}, seed=1
    )
    model = load_causal_lm(str(directory)).to(device).eval()
    tokenizer = load_tokenizer(str(directory))
    prompts = encode_prompts(tokenizer, ["the movie was", "i love this"], chat_template=False)
    sampling = SamplingSpec(max_new_tokens=12, batch_size=8)
    generated = generate(model, tokenizer, prompts, 4, sampling, seed=0, progress=False)
    stops = 0
    for row in generated.response_ids:
        for ids in row:
            ends = [i for i, t in enumerate(ids) if t in (3, 5)]
            assert not ends or ends[0] == len(ids) - 1, f"a response runs past its first EOS id: {ids}"
            stops += bool(ends)
    # HF's per-step scores under the bridge's config equal log π of the sampled tokens
    config = exact_generation_config(sampling, tokenizer.pad_token_id, [3, 5])
    config.output_scores, config.return_dict_in_generate = True, True
    torch.manual_seed(0)
    prompt = torch.tensor([prompts[0]], device=device)
    with torch.no_grad():
        output = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=config)
    tokens = output.sequences[0, prompt.shape[1] :].tolist()
    scored = [float(s[0].log_softmax(-1)[t]) for s, t in zip(output.scores, tokens)]
    sampled = float(
        sequence_logprobs(model, [prompts[0]], [tokens[: len(scored)]], tokenizer.pad_token_id, device=device)[0]
    )
    gap = abs(sum(scored) - sampled)
    assert gap < 1e-3, f"generation scores differ from log π by {gap} nats (a logits processor was applied?)"
    return f"{stops} of 8 responses stopped at an EOS id, none ran past it; |Σ scores − log π| = {gap:.1e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run, not a GPU)"
    rows, failed = [], 0
    with tempfile.TemporaryDirectory() as scratch:
        directory = build_tiny_model(Path(scratch) / "tiny")
        checks = (
            ("log-probs (float32 on device vs float64 CPU)", lambda: check_logprobs(directory, device)),
            ("mixed precision (bf16 autocast, float32 masters)", lambda: check_mixed_precision(directory, device)),
            (
                "exact sampling (penalty and EOS list ignored/honoured)",
                lambda: check_exact_sampling(Path(scratch), device),
            ),
        )
        for label, check in checks:
            begin = time.perf_counter()
            try:
                detail, status = check(), "pass"
            except Exception as exc:  # noqa: BLE001  (every failure is reported, then the script exits 1)
                detail, status = f"{type(exc).__name__}: {exc}", "FAIL"
                traceback.print_exc()
                failed += 1
            rows.append(f"| {label} | {status} | {detail} | {time.perf_counter() - begin:.1f} |")
            print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    text = "\n".join(
        [
            f"# Bridge checks on {name}",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}.",
            "",
            "| check | status | detail | s |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
    (args.out / "gpu_cuda_checks.md").write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
