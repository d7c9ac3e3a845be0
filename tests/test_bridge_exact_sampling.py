"""Generation samples from π exactly and log-probs score π exactly (issue 13 §2), on tiny local models.

* A model whose ``generation_config.json`` sets logits processors (repetition penalty, temperature,
  top-k/top-p, n-gram blocking, a minimum length, suppressed tokens) and a Llama-3-style list of EOS ids:
  the scores ``generate`` samples from equal log π at every step, and responses end at any of the EOS ids.
* ``batched_sequence_logprobs`` scores with dropout off even for a model in train mode (and restores it).
* Response-only chunked scoring equals the full-vocabulary computation over every position to 1e-12.
"""

import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma2Config

from llm_bridge import generation as bridge_generation
from llm_bridge import logprobs as bridge_logprobs
from llm_bridge.generation import SamplingSpec, eos_token_ids, generate
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.models import LoraSpec, add_lora, load_causal_lm, load_tokenizer
from llm_bridge.tiny import build_tiny_model, build_tokenizer

torch.set_num_threads(1)  # tiny models: one intra-op thread is far faster on small shared machines

PROMPTS = ["tell me a story", "the movie was", "i love this", "write a review of the film"]


@pytest.fixture(scope="module")
def processed_model(tmp_path_factory):
    """A tiny Llama whose generation config would distort sampling, with two EOS ids (</s> and "day")."""
    directory = tmp_path_factory.mktemp("models") / "processed"
    tokenizer = build_tokenizer(directory)
    second_eos = tokenizer.convert_tokens_to_ids("day")
    suppressed = tokenizer.convert_tokens_to_ids("movie")
    config = {
        "eos_token_id": [tokenizer.eos_token_id, second_eos],
        "do_sample": True,
        "repetition_penalty": 1.3,
        "temperature": 0.7,
        "top_k": 5,
        "top_p": 0.8,
        "no_repeat_ngram_size": 2,
        "min_new_tokens": 3,
        "suppress_tokens": [suppressed],
    }
    build_tiny_model(directory, "llama", seed=2, generation_config=config)
    return directory, second_eos


def _recording_generate(model, record):
    """Wrap ``model.generate`` to also keep the processed scores and raw logits of every step."""
    real = model.generate

    def wrapped(**kwargs):
        output = real(**kwargs, output_scores=True, output_logits=True, return_dict_in_generate=True)
        record.append(output)
        return output.sequences

    model.generate = wrapped


def test_generation_samples_from_pi_despite_the_models_generation_config(processed_model):
    directory, second_eos = processed_model
    model, tokenizer = load_causal_lm(str(directory)), load_tokenizer(str(directory))
    assert model.generation_config.repetition_penalty == 1.3  # the config is really there
    eos = eos_token_ids(model, tokenizer)
    assert eos == [tokenizer.eos_token_id, second_eos]
    record = []
    _recording_generate(model, record)
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    sampling = SamplingSpec(max_new_tokens=12, batch_size=16)
    out = generate(model, tokenizer, prompt_ids, 16, sampling, seed=0, progress=False)

    # every step's sampling distribution is softmax(logits): no processor touched them
    for output in record:
        for scores, logits in zip(output.scores, output.logits):
            torch.testing.assert_close(
                torch.log_softmax(scores.double(), -1), torch.log_softmax(logits.double(), -1), rtol=0, atol=1e-6
            )
    # and the sampled tokens' log-probabilities summed are log π(y|x) as the trainer scores it
    rows = [(i, k) for i in range(len(PROMPTS)) for k in range(16)]
    sampled = torch.zeros(len(rows), dtype=torch.float64)
    for batch_index, output in enumerate(record):
        steps = torch.stack([torch.log_softmax(s.double(), -1) for s in output.scores], dim=1)
        for row in range(output.sequences.shape[0]):
            i, k = rows[batch_index * 16 + row]
            response = out.response_ids[i][k]
            tokens = torch.tensor(response)
            sampled[batch_index * 16 + row] = steps[row, torch.arange(len(response)), tokens].sum()
    flat_prompts = [prompt_ids[i] for i, _ in rows]
    flat_responses = [out.response_ids[i][k] for i, k in rows]
    scored = batched_sequence_logprobs(model, flat_prompts, flat_responses, tokenizer.pad_token_id)
    torch.testing.assert_close(sampled, scored, rtol=0, atol=1e-4)

    # responses end at the first of either EOS id, and both occur as ends
    endings = set()
    for response in flat_responses:
        inside = [t for t in response[:-1] if t in eos]
        assert not inside, response
        if response[-1] in eos:
            endings.add(response[-1])
        else:
            assert len(response) == sampling.max_new_tokens
    assert endings == set(eos)
    # the model's own generation config is back in place afterwards
    assert model.generation_config.repetition_penalty == 1.3


def test_generation_honours_every_eos_id_of_a_lora_model(processed_model):
    directory, second_eos = processed_model
    model = add_lora(load_causal_lm(str(directory)), LoraSpec(r=2, alpha=4.0))
    tokenizer = load_tokenizer(str(directory))
    assert eos_token_ids(model, tokenizer) == [tokenizer.eos_token_id, second_eos]
    record = []
    _recording_generate(model, record)
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    generate(model, tokenizer, prompt_ids, 4, SamplingSpec(max_new_tokens=6), seed=1, progress=False)
    for output in record:
        for scores, logits in zip(output.scores, output.logits):
            torch.testing.assert_close(
                torch.log_softmax(scores.double(), -1), torch.log_softmax(logits.double(), -1), rtol=0, atol=1e-6
            )


def test_exact_generation_config_keeps_the_requested_warpers():
    config = bridge_generation.exact_generation_config(SamplingSpec(temperature=0.5, top_k=3), 1, [3, 7])
    assert (config.temperature, config.top_k, config.top_p, config.repetition_penalty) == (0.5, 3, 1.0, 1.0)
    assert config.eos_token_id == [3, 7] and config.no_repeat_ngram_size == 0 and config.num_beams == 1


# --------------------------------------------------------------------------------------------- log-probs


def _full_reference(model, prompts, responses, pad):
    """The former computation: full-vocabulary logits at every position, response positions summed."""
    input_ids, attention, response_mask = bridge_logprobs._batch(prompts, responses, pad, "cpu")
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
    targets = input_ids[:, 1:]
    token = torch.gather(logits, 2, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (token * response_mask[:, 1:]).sum(dim=1)


def _scoring_batch(tokenizer):
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    responses = [
        tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for r in ("good", "the plot was terrible", "a lovely day", "she said it was excellent and great")
    ]
    return prompts, responses


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_response_only_chunked_logprobs_equal_the_full_computation(tmp_path, architecture):
    directory = build_tiny_model(tmp_path / architecture, architecture, seed=4)
    model, tokenizer = load_causal_lm(str(directory), "float64"), load_tokenizer(str(directory))
    prompts, responses = _scoring_batch(tokenizer)
    pad = tokenizer.pad_token_id
    head = model.get_output_embeddings()
    positions = []
    hook = head.register_forward_hook(lambda module, args, output: positions.append(output.shape[:-1].numel()))
    try:
        chunked = bridge_logprobs.sequence_logprobs(model, prompts, responses, pad, chunk_size=3)
    finally:
        hook.remove()
    response_tokens = sum(len(r) for r in responses)
    # the head saw one position per row (the model's own call, then the check that it is the plain head) and
    # the response positions in chunks of ≤ 3; never a prompt or padding position
    assert positions[:2] == [len(prompts), len(prompts)] and max(positions[2:]) <= 3
    assert sum(positions[2:]) == response_tokens
    full = _full_reference(model, prompts, responses, pad)
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-12)

    # gradients agree too (the chunks are checkpointed under gradient)
    weights = torch.linspace(-1.0, 2.0, len(prompts), dtype=torch.float64)
    (weights * chunked).sum().backward()
    chunked_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    (weights * full).sum().backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(chunked_grads[name], parameter.grad, rtol=0, atol=1e-12)
    # one chunk (the default) gives the same values
    torch.testing.assert_close(
        bridge_logprobs.sequence_logprobs(model, prompts, responses, pad).detach(), full.detach(), rtol=0, atol=1e-12
    )


def test_soft_capped_logits_fall_back_to_the_full_computation(tmp_path):
    tokenizer = build_tokenizer(tmp_path)
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=0.5,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(torch.float64).eval()
    with torch.no_grad():  # make the logits large enough for the soft-capping to matter
        model.get_output_embeddings().weight.mul_(50.0)
    prompts, responses = _scoring_batch(tokenizer)
    with pytest.warns(UserWarning, match="full-vocabulary"):
        values = bridge_logprobs.sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id, chunk_size=2)
    full = _full_reference(model, prompts, responses, tokenizer.pad_token_id)
    torch.testing.assert_close(values, full, rtol=0, atol=1e-12)


def test_diverged_weights_are_scored_without_the_soft_capping_warning(tmp_path):
    """NaN weights give NaN logits, which are still the plain head's: the scoring keeps its chunked path and
    does not warn about soft-capping (the warning once came before every divergence error)."""
    directory = build_tiny_model(tmp_path / "nan", "llama", seed=4)
    model, tokenizer = load_causal_lm(str(directory), "float64"), load_tokenizer(str(directory))
    with torch.no_grad():
        model.get_output_embeddings().weight[0, 0] = float("nan")
    prompts, responses = _scoring_batch(tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = bridge_logprobs.sequence_logprobs(model, prompts, responses, tokenizer.pad_token_id, chunk_size=3)
    assert torch.isnan(values).all()


def test_batched_scoring_turns_dropout_off_and_restores_the_mode(tmp_path):
    directory = build_tiny_model(tmp_path / "dropout", "gpt2", seed=5, dropout=0.3)
    model, tokenizer = load_causal_lm(str(directory)), load_tokenizer(str(directory))
    prompts, responses = _scoring_batch(tokenizer)
    pad = tokenizer.pad_token_id
    evaluation = batched_sequence_logprobs(model, prompts, responses, pad)
    model.train()
    model.transformer.h[0].eval()  # a mixed state must come back as it was
    modes = {name: module.training for name, module in model.named_modules()}
    torch.manual_seed(0)
    first = batched_sequence_logprobs(model, prompts, responses, pad)
    torch.manual_seed(1)
    second = batched_sequence_logprobs(model, prompts, responses, pad)
    assert torch.equal(first, evaluation) and torch.equal(second, evaluation)
    assert {name: module.training for name, module in model.named_modules()} == modes
    torch.manual_seed(0)  # the model does have active dropout in train mode
    with torch.no_grad():
        noisy = bridge_logprobs.sequence_logprobs(model, prompts, responses, pad)
    assert not torch.allclose(noisy.double(), evaluation)
