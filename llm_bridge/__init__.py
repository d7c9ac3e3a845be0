"""prefsim's LLM bridge: the rules verified on bandits, trained on Hugging Face causal LMs in torch.

===================  ===========================================================================
module               what it holds
===================  ===========================================================================
``losses``           torch twins of ``sim.rules``' per-pair losses (conformance-tested vs JAX)
``rules``            every registry rule with a loss (dpo, online_ipo, inpo, sppo, dno, nash_md, extragradient, …)
``logprobs``         summed response log-probabilities of a causal LM
``generation``       batched, left-padded, seeded sampling from π_t (or Nash-MD's per-token mixture)
``oracles``          preference oracles: callable, Bradley–Terry over a reward, VADER, local reward model
``pairs``            pair schemes: iid (λ_p), best/worst-of-K, INPO tournament, opponent and population pairs
``stages``           an iteration as the definition's proximal stages (extragradient, optimistic MD)
``seeds``            one independent random stream per draw: hashed (spec seed, iteration, purpose, …)
``trainer``          AdamW/RMSprop/SGD on precomputed pairs, gradient accumulation, bf16 on CUDA
``apo``              APO across iterations: parameter-space extrapolation and the implicit reference
``loop``             the outer loop (sample → label → precompute → train → extrapolate → save), resume
``run_layout``       the names a run writes at the top of ``--out`` (rule labels may not take them)
``spec`` / ``cli``   TOML specs and the ``prefsim llm`` command
``metrics``/``plot`` per-iteration metrics (win rate with CI, rewards, KL, throughput) and the figure
``models``           local-only loading (HF dirs, GGUF, SmolLM2), LoRA, safetensors checkpoints
``bandit_lm``        the one-token tabular "LM" used to prove equivalence with ``sim``
``tiny``             tiny random Llama/GPT-2 models and tokenizers built offline (tests, benchmarks)
===================  ===========================================================================

``sim`` never imports this package; the ``prefsim`` CLI finds ``llm_bridge.cli:command`` through the
``prefsim.commands`` entry point.
"""
