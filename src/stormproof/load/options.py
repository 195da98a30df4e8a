"""Build a shape from flat options (the command line's ``--shape bursts --peak 80 ...``)."""

from __future__ import annotations

from pathlib import Path

from stormproof.errors import ConfigError
from stormproof.load.distributions import Fixed, parse_distribution
from stormproof.load.shapes import Bursts, Ramp, Replay, Shape, Spike, Steady

__all__ = ["SHAPES", "shape_from_options"]

#: The shape names the command line knows.
SHAPES = ("steady", "ramp", "spike", "bursts", "replay")


def _single(field: str, text: str) -> float:
    """A plain number (ramps and spikes take no distribution)."""
    value = parse_distribution(field, text)
    if not isinstance(value, Fixed):
        raise ConfigError(field, "must be a number for this shape (no distribution)", text)
    return value.value


def _upper(field: str, text: str) -> float:
    """The largest value a distribution can take (a spike's length from a burst range)."""
    high = parse_distribution(field, text).high
    assert high is not None  # every distribution has a finite upper bound once built
    return high


def shape_from_options(
    kind: str,
    *,
    duration: float,
    rate: float = 5.0,
    peak: str = "50",
    burst: str = "2..5",
    idle: str = "exp:8:3..20",
    lead_in: str | None = None,
    tail: float = 0.0,
    spike_at: float | None = None,
    replay: Path | None = None,
    replay_interval: float = 1.0,
) -> Shape:
    """The shape ``kind`` with these options.

    * ``steady``: ``rate`` throughout;
    * ``ramp``: from ``rate`` to ``peak`` (a number) over the run;
    * ``spike``: ``rate``, then ``peak`` at ``spike_at`` (default a third of the run) for the
      largest value of ``burst`` (seconds);
    * ``bursts``: ``peak`` (a distribution) for ``burst`` s, idle gaps of ``idle`` s at ``rate``,
      after a ``lead_in`` (default: an ``idle`` draw), none starting in the last ``tail`` s;
    * ``replay``: the CSV file ``replay`` (``time,rate`` or one ``rate`` per
      ``replay_interval`` s); bursts are where the rate exceeds ``rate``.

    Distributions are text: ``3``, ``1..4``, ``exp:5`` or ``exp:5:2..30``.
    """
    if kind == "steady":
        return Steady(rate)
    if kind == "ramp":
        return Ramp(rate, _single("peak", peak))
    if kind == "spike":
        at = duration / 3 if spike_at is None else spike_at
        return Spike(
            rate,
            _single("peak", peak),
            at,
            _upper("burst", burst),
        )
    if kind == "bursts":
        return Bursts(
            rate=parse_distribution("peak", peak),
            length=parse_distribution("burst", burst),
            idle=parse_distribution("idle", idle),
            idle_rate=rate,
            lead_in=None if lead_in is None else parse_distribution("lead_in", lead_in),
            tail=tail,
        )
    if kind == "replay":
        if replay is None:
            raise ConfigError("replay", "a CSV file is needed for --shape replay")
        try:
            return Replay.from_file(replay, interval=replay_interval, burst_above=rate)
        except OSError as error:
            raise ConfigError("replay", f"cannot be read: {error.strerror}", str(replay)) from None
    raise ConfigError("shape", f"must be one of {', '.join(SHAPES)}", kind)
