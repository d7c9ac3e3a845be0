"""Tiny, randomly initialised causal LMs built offline, for fast CPU tests and benchmarks of the bridge.

:func:`build_tiny_model` trains a small word-level tokenizer with the ``tokenizers`` library on a few
sentences, builds a tiny Llama or GPT-2 model from a config, and writes a Hugging Face directory that
:func:`llm_bridge.models.load_causal_lm` can load like any local model.  :func:`build_tiny_reward_model`
does the same for a sequence-classification reward model (the ``reward_model`` oracle).  Nothing is
downloaded.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from llm_bridge.trainer import PairTensors

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

#: The rules whose training step the benchmarks time against DPO (label → registry name, parameters).
TIMED_RULES = {
    "dpo": ("dpo", {"beta": 0.1}),
    "online_ipo": ("online_ipo", {"tau": 0.1}),
    "inpo": ("inpo", {"eta": 0.5, "tau": 0.1}),
    "sppo": ("sppo", {"eta": 1.0}),
    "dno": ("dno", {"eta": 1.0}),
    "nash_md": ("nash_md", {"tau": 0.1}),
    "apo(dpo)": ("apo", {"base": "dpo", "beta": 0.1, "alpha": 0.3}),
}

SENTENCES = (
    "the movie was good and the actors were great",
    "the movie was bad and the plot was terrible",
    "i love this wonderful happy day",
    "i hate this awful sad day",
    "tell me a story about a dog",
    "write a review of the film",
    "what a nice and lovely place",
    "this is the worst food ever",
    "the weather is fine today",
    "she said it was excellent",
)

#: Short prompts for the tiny model's prediction studies (``prefsim llm --predict``): notebook 08 trains on all 16,
#: in this order; tests/test_bridge_prediction.py on the first six, and on those and the last six for its study.
PROMPTS = (
    "the movie was",
    "i love this",
    "tell me a story",
    "what a nice",
    "the weather is",
    "she said it",
    "write a review",
    "this is the",
    "the actors were",
    "i hate this",
    "a good day",
    "this film is",
    "my friend said",
    "the food was",
    "we went to",
    "it looks like",
)


def build_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer (with <unk>, <pad>, <s>, </s>) trained on :data:`SENTENCES`, saved to ``directory``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<s>", "</s>"])
    tokenizer.train_from_iterator(SENTENCES, trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.save_pretrained(str(directory))
    return fast


def build_tiny_model(
    directory: Path,
    architecture: str = "llama",
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    generation_config: dict | None = None,
    dropout: float = 0.0,
) -> Path:
    """Write a tiny random causal LM (``llama`` or ``gpt2``) and its tokenizer to ``directory``.

    ``generation_config``: settings written to the model's ``generation_config.json`` (as a downloaded
    model may carry: ``repetition_penalty``, a list of ``eos_token_id``, …; a list of EOS ids also
    goes into ``config.json``, as for Llama 3).  ``dropout``: attention dropout (Llama) or every dropout
    (GPT-2); 0 by default.
    """
    from transformers import AutoModelForCausalLM, GenerationConfig, GPT2Config, LlamaConfig

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(directory)
    eos = (generation_config or {}).get("eos_token_id", tokenizer.eos_token_id)
    common = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
    )
    if architecture == "llama":
        config = LlamaConfig(
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            attention_dropout=dropout,
            **common,
        )
    elif architecture == "gpt2":
        config = GPT2Config(
            n_embd=hidden_size,
            n_layer=layers,
            n_head=4,
            n_positions=128,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            **common,
        )
    else:
        raise ValueError(f"architecture must be llama or gpt2, got {architecture!r}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(str(directory))
    if generation_config is not None:
        GenerationConfig(
            bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id, **generation_config
        ).save_pretrained(str(directory))
    return directory


def build_tiny_reward_model(directory: Path, seed: int = 0) -> Path:
    """Write a tiny random Llama sequence-classification model (1 label) and its tokenizer to ``directory``."""
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(directory)
    config = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=len(tokenizer),
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(directory))
    return directory


def random_pair_batch(
    allowed: Sequence[int], pairs: int, prompt_tokens: int, response_tokens: int, seed: int = 0
) -> PairTensors:
    """A batch to time training steps on: random (prompt, winner, loser) token ids drawn from ``allowed`` and
    random precomputed anchors (log-probs N(−30, 1), win rates and preferences U(0, 1), weight 1)."""
    generator = torch.Generator().manual_seed(seed)
    allowed = torch.as_tensor(list(allowed))

    def tokens(n):
        return allowed[torch.randint(len(allowed), (n,), generator=generator)].tolist()

    prompts = [tokens(prompt_tokens) for _ in range(pairs)]
    values = {
        k: torch.randn(pairs, generator=generator, dtype=torch.float64) - 30.0
        for k in ("reference_w", "reference_l", "previous_w", "previous_l")
    }
    values.update(
        win_rate_w=torch.rand(pairs, generator=generator, dtype=torch.float64),
        win_rate_l=torch.rand(pairs, generator=generator, dtype=torch.float64),
        preference=torch.rand(pairs, generator=generator, dtype=torch.float64),
        weight=torch.ones(pairs, dtype=torch.float64),
    )
    winners = [tokens(response_tokens) for _ in range(pairs)]
    losers = [tokens(response_tokens) for _ in range(pairs)]
    return PairTensors(prompts, winners, losers, values)


def main(argv: list[str] | None = None) -> int:
    """``python -m llm_bridge.tiny DIR``: write a tiny random Llama (and its tokenizer) to DIR, for the
    README's quick start of ``prefsim llm`` (``examples/llm_tiny.toml``) without any download."""
    parser = argparse.ArgumentParser(prog="python -m llm_bridge.tiny", description=main.__doc__)
    parser.add_argument("directory", help="where to write the model (created)")
    parser.add_argument("--architecture", choices=("llama", "gpt2"), default="llama")
    args = parser.parse_args(argv)
    path = build_tiny_model(Path(args.directory), args.architecture)
    print(f"wrote a tiny random {args.architecture} model to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
