"""prefsim's problems: preference models, reference policies and game specifications.

``bandits`` imports neither ``sim`` nor ``llm_bridge``.
"""

from bandits.errors import PrefsimError  # noqa: F401
from bandits.games import GameInstance, GameSpec, build_game  # noqa: F401
