"""Routes: (channel, destination prefix, message type) → connectors in failover order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from switchboard.domain.messages import Channel, MessageType

SANDBOX = "sandbox"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    channel: Channel
    connectors: tuple[str, ...]
    prefixes: tuple[str, ...] = ()  # country code or longer, digits only
    message_types: tuple[MessageType, ...] = ()

    def matches(self, channel: Channel, digits: str, message_type: MessageType) -> bool:
        if channel is not self.channel:
            return False
        if self.message_types and message_type not in self.message_types:
            return False
        return not self.prefixes or any(digits.startswith(p) for p in self.prefixes)

    @property
    def specificity(self) -> int:
        longest = max((len(p) for p in self.prefixes), default=0)
        return longest * 2 + (1 if self.message_types else 0)


def choose_connectors(
    routes: Sequence[Route], channel: Channel, destination: str, message_type: MessageType
) -> tuple[str, ...]:
    """The connectors to try, best route first; the most specific prefix wins, ties by order.

    With no routes configured every channel goes to the built-in sandbox carrier.
    """
    if not routes:
        return (SANDBOX,)
    digits = destination.lstrip("+")
    matching = [r for r in routes if r.matches(channel, digits, message_type)]
    ordered = sorted(enumerate(matching), key=lambda pair: (-pair[1].specificity, pair[0]))
    chosen: list[str] = []
    for _, route in ordered:
        for name in route.connectors:
            if name not in chosen:
                chosen.append(name)
    return tuple(chosen)
