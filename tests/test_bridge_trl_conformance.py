"""Conformance with TRL (issue 13 §3): TRL's own DPO (``loss_type="sigmoid"``) and IPO losses equal the bridge's.

TRL ≥ 1.x has no free-standing loss function: ``DPOTrainer._compute_loss(model, inputs)`` scores the
batch with its own fused LM head and applies the loss.  The test builds a real ``DPOTrainer`` (tiny
float64 Llama policy and reference built offline, three preference pairs), takes one collated batch and
compares, on the same sequences,

* on the same log-probabilities (TRL's own, recorded from its forward): TRL's loss and its gradient with
  respect to the per-token log-probs with ``llm_bridge.losses.dpo_loss`` / ``ipo_loss`` averaged over
  the pairs as TRL does (float32, 1e-6: TRL's kernel computes log-probs in float32);
* end to end: the bridge's own log-probabilities (:func:`llm_bridge.logprobs.sequence_logprobs`, float64)
  with TRL's, and the resulting loss and gradient with respect to every policy parameter (to float32
  precision).

Convention difference (documented, not a bug): TRL's ``ipo`` divides each response's log-ratio by its
length in tokens (``(Δ̄ − 1/(2β))²`` with Δ̄ = mean-per-token log-ratio difference; TRL's β is the IPO
paper's τ), whereas the bridge's ``ipo_loss`` is the paper's sequence-level loss on summed log-ratios.
TRL's value is therefore the bridge's ``ipo_loss`` applied to length-normalised log-probabilities.
"""

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from llm_bridge.logprobs import sequence_logprobs
from llm_bridge.losses import dpo_loss, ipo_loss
from llm_bridge.models import load_causal_lm, load_tokenizer
from llm_bridge.tiny import build_tiny_model

torch.set_num_threads(1)  # tiny models: one intra-op thread is far faster on small shared machines

PAIRS = {
    "prompt": ["tell me a story", "the movie was", "i love this"],
    "chosen": [" about a dog", " good and the actors were great", " wonderful happy day"],
    "rejected": [" the worst food ever", " bad", " awful sad day"],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl")
    return build_tiny_model(root / "policy", "llama", seed=0), build_tiny_model(root / "reference", "llama", seed=1)


def _trainer(models, tmp_path, loss_type, beta):
    policy = load_causal_lm(str(models[0]), "float64")
    reference = load_causal_lm(str(models[1]), "float64")
    tokenizer = load_tokenizer(str(models[0]))
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"),
        beta=beta,
        loss_type=[loss_type],
        per_device_train_batch_size=len(PAIRS["prompt"]),
        report_to="none",
        use_cpu=True,
        bf16=False,
    )
    trainer = DPOTrainer(
        model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_dict(PAIRS), processing_class=tokenizer
    )
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, policy, reference, tokenizer, batch


def _sequences(batch):
    """Prompt and completion token lists of each row of TRL's batch (chosen rows first, then rejected)."""
    prompts, completions = [], []
    for ids, attention, completion in zip(batch["input_ids"], batch["attention_mask"], batch["completion_mask"]):
        prompts.append(ids[(attention == 1) & (completion == 0)].tolist())
        completions.append(ids[completion == 1].tolist())
    return prompts, completions


def _gradients(model):
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


def _record_outputs(module, store):
    """Keep every output of ``module``'s (TRL-patched) forward in ``store``."""
    real = module.forward

    def forward(*args, **kwargs):
        output = real(*args, **kwargs)
        store.append(output)
        return output

    module.forward = forward


def _bridge_loss(loss_type, beta, w, l, ref_w, ref_l, lengths):
    """The bridge's per-pair loss averaged over the pairs; TRL's IPO convention through length-normalised inputs."""
    if loss_type == "sigmoid":
        return dpo_loss(w, l, ref_w, ref_l, beta).mean()
    length_w, length_l = lengths
    return ipo_loss(w / length_w, l / length_l, ref_w / length_w, ref_l / length_l, beta).mean()


@pytest.mark.parametrize(("loss_type", "beta"), [("sigmoid", 0.3), ("ipo", 0.4)])
def test_trl_loss_equals_the_bridge_loss_on_the_same_logprobs(models, tmp_path, loss_type, beta):
    trainer, policy, reference, tokenizer, batch = _trainer(models, tmp_path, loss_type, beta)
    policy_outputs, reference_outputs = [], []
    _record_outputs(trainer.model, policy_outputs)
    _record_outputs(trainer.ref_model, reference_outputs)
    trl_loss = trainer._compute_loss(trainer.model, batch, return_outputs=False)

    # 1. the same log-probabilities (TRL's own per-token log-probs, summed over each completion)
    per_token = policy_outputs[-1].log_probs
    seq_len = batch["input_ids"].shape[1] - 1
    logps = per_token[:, -seq_len:].sum(dim=1)
    reference_logps = reference_outputs[-1].log_probs[:, -seq_len:].sum(dim=1)
    n = len(logps) // 2
    lengths = batch["completion_mask"].sum(dim=1).to(logps.dtype)
    assert not torch.equal(lengths[:n], lengths[n:])  # IPO's length convention matters on this batch
    bridge = _bridge_loss(
        loss_type, beta, logps[:n], logps[n:], reference_logps[:n], reference_logps[n:], (lengths[:n], lengths[n:])
    )
    torch.testing.assert_close(bridge, trl_loss, rtol=1e-6, atol=1e-7)
    (trl_gradient,) = torch.autograd.grad(trl_loss, per_token, retain_graph=True)
    (bridge_gradient,) = torch.autograd.grad(bridge, per_token, retain_graph=True)
    torch.testing.assert_close(bridge_gradient, trl_gradient, rtol=1e-6, atol=1e-7)
    if loss_type == "ipo":  # the bridge's sequence-level IPO (summed log-ratios) is a different loss
        summed = ipo_loss(logps[:n], logps[n:], reference_logps[:n], reference_logps[n:], beta).mean()
        assert abs(float(summed) - float(trl_loss)) > 1e-3

    # 2. end to end: the bridge's own log-probs (float64) against TRL's (float32 kernel), and the parameter gradients
    trl_loss.backward()
    trl_grads = _gradients(policy)
    prompts, completions = _sequences(batch)
    own = sequence_logprobs(policy, prompts, completions, tokenizer.pad_token_id, chunk_size=4)
    with torch.no_grad():
        own_reference = sequence_logprobs(reference, prompts, completions, tokenizer.pad_token_id)
    torch.testing.assert_close(own.detach().float(), logps.detach().float(), rtol=1e-5, atol=1e-5)
    assert [len(c) for c in completions] == lengths.long().tolist()
    own_lengths = (lengths[:n].double(), lengths[n:].double())
    own_loss = _bridge_loss(loss_type, beta, own[:n], own[n:], own_reference[:n], own_reference[n:], own_lengths)
    torch.testing.assert_close(own_loss.detach().float(), trl_loss.detach().float(), rtol=1e-5, atol=1e-6)
    own_loss.backward()
    own_grads = _gradients(policy)
    assert set(own_grads) == set(trl_grads)
    for name, gradient in trl_grads.items():
        torch.testing.assert_close(own_grads[name].float(), gradient.float(), rtol=1e-4, atol=1e-6)
    logged = trainer._metrics["train"] if trainer._metrics["train"]["logps/chosen"] else trainer._metrics["eval"]
    assert logged["logps/chosen"][-1] == pytest.approx(float(own[:n].detach().mean()), abs=1e-4)
