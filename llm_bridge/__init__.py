"""prefsim's LLM bridge: the rules verified on bandits, trained on Hugging Face causal LMs in torch."""
