"""The bridge's random streams: one seed per named draw, independent for distinct names.

Every seed the bridge uses is :func:`stream_seed` of a tuple that names the draw: the spec seed, the
iteration, what the draw is for (:class:`Purpose`), then the stage's stream and, where a draw is split, the
prompt or the generation batch.  The tuple is hashed (NumPy's ``SeedSequence``), so distinct tuples give
independent streams and nothing else does: the seeds depend on the spec seed and the iteration, not on the
rule (common random numbers: every rule sees the same samples at an iteration), nor on the number of
processes (a generation batch is named by its global index), nor on whether the run was resumed.

The bridge derived them arithmetically before, ``(seed·1000 + t + 1)·16 + stream``, ×101 for evaluation and
``seed·1 000 003 + batch`` per generation batch, so unrelated draws shared seeds: spec seed s at iteration
999 + k drew what s + 1 drew at k − 1, and a two-stage rule's second draw at iteration t + 1 = 101(i + 1) + 31
reused the samples of π_i's evaluation.  The samples of every bridge run changed with this module.
"""

from __future__ import annotations

import enum

import numpy as np

from bandits.errors import PrefsimError


class Purpose(enum.IntEnum):
    """What a draw is for: the third part of the tuple :func:`stream_seed` hashes."""

    REFERENCE = 0
    """π_ref's held-out responses (iteration 0)."""
    SAMPLE = 1
    """A stage's training responses from the policy the model holds."""
    OPPONENT = 2
    """The second response from a rule's opponent (Nash-MD's geometric mixture)."""
    LABELS = 3
    """The pair scheme's draws of a prompt (``numpy.random.Generator``)."""
    TRAIN = 4
    """The trainer's shuffle of a stage's pairs."""
    EVALUATE = 5
    """π_t's held-out responses."""
    CANDIDATES = 6
    """``prefsim llm --predict``: the candidate game's responses from π_ref."""


#: The stage stream (the fourth part of the tuple, after the :class:`Purpose`) of a carried stage's own draw, at
#: t = 0 or a reference advance, when there are no carried pairs yet (:func:`llm_bridge.stages.run_stages`): the
#: other draws' stream is their stage's index, 0, 1, …, so a rule may have at most 7 stages.
CARRIED_STREAM = 7


def stage_stream(index: int, initial: bool) -> int:
    """The stream of stage ``index``'s draw: its index, or :data:`CARRIED_STREAM` for a carried stage's own draw
    (``initial``); a stage whose index would reach :data:`CARRIED_STREAM` is refused (it would share its seeds)."""
    if index >= CARRIED_STREAM:
        raise PrefsimError(
            f"stage {index}: a rule has at most {CARRIED_STREAM} stages (stream {CARRIED_STREAM} is a carried "
            "stage's own draw); split the rule's update into fewer stages."
        )
    return CARRIED_STREAM if initial else index


def stream_seed(*parts: int) -> int:
    """A seed in [0, 2⁶⁴) for the random stream named by the integers ``parts``; distinct tuples give
    independent streams.

    ``np.random.SeedSequence`` hashes an injective encoding of the tuple: the number of parts, then per part
    its sign, its number of 32-bit words and the words.  SeedSequence's own reading of a list is not
    injective (it pads short entropy with zeros and splits a large integer into words, so ``[a, b]`` and
    ``[a, b, 0]``, or ``[2³² + a]`` and ``[a, 1]``, seed one stream).  ``torch.manual_seed`` takes the result
    as it is; ``np.random.default_rng`` too.
    """
    words = [len(parts)]
    for part in parts:
        if not isinstance(part, (int, np.integer)) or isinstance(part, (bool, np.bool_)):
            raise PrefsimError(f"a random stream is named by integers; got {part!r} in {parts!r}.")
        value = int(part)
        magnitude = abs(value)
        count = max(1, (magnitude.bit_length() + 31) // 32)
        words += [int(value < 0), count] + [(magnitude >> (32 * i)) & 0xFFFFFFFF for i in range(count)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])
