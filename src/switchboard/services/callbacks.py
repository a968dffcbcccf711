"""Customer callbacks: the endpoint (URL, signing secret, events), its deliveries and replays."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from switchboard.callbacks.secrets import generate_secret
from switchboard.callbacks.ssrf import DestinationError
from switchboard.clock import Clock
from switchboard.domain.callbacks import (
    EVENT_SUBSCRIPTIONS,
    CallbackEndpoint,
    DeliveryState,
    WebhookDelivery,
)
from switchboard.errors import InvalidRequestError, NotFoundError
from switchboard.storage.base import CallbackStore

MAX_URL_LENGTH = 2048
MAX_LIST = 200

CheckUrl = Callable[[str], Awaitable[object]]
"""The SSRF policy's check: raises DestinationError for a URL that will not be called."""


@dataclass(frozen=True, slots=True)
class Configured:
    endpoint: CallbackEndpoint
    new_secret: str | None  # shown once: when the endpoint first gets one, or on rotation


class CallbackService:
    def __init__(
        self,
        store: CallbackStore,
        clock: Clock,
        *,
        check_url: CheckUrl,
        rotation_overlap: timedelta,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._check_url = check_url
        self._overlap = rotation_overlap
        self._on_queued = on_queued

    @property
    def rotation_overlap(self) -> timedelta:
        return self._overlap

    async def endpoint(self, account_id: str) -> CallbackEndpoint:
        endpoint = await self._store.get_endpoint(account_id)
        if endpoint is None:
            raise NotFoundError(f"no customer {account_id}")
        return endpoint

    async def configure(
        self, account_id: str, url: str | None, *, events: Iterable[str] | None = None
    ) -> Configured:
        """Set (None or '' removes) the callback URL and, if given, the event subscription.

        The URL must pass the SSRF policy now; it is checked again on every delivery. Setting
        a URL re-enables an endpoint disabled by a 410, and gives it a secret if it has none.
        Raises InvalidRequestError (400) with a reason the customer can act on.
        """
        current = await self.endpoint(account_id)
        url = (url or "").strip() or None
        changes: dict[str, object] = {"url": url, "disabled_at": None, "disabled_reason": None}
        new_secret = None
        if url is not None:
            await self._check(url)
            if current.secret is None:
                new_secret = generate_secret()
                changes["secret"] = new_secret
        subscribed = None if events is None else _subscription(events)
        updated = await self._store.update_endpoint(
            account_id, self._clock.now(), events=subscribed, **changes
        )
        if updated is None:
            raise NotFoundError(f"no customer {account_id}")
        return Configured(updated, new_secret)

    async def rotate_secret(self, account_id: str) -> Configured:
        """A new secret; the previous one keeps signing beside it for the rotation overlap."""
        await self.endpoint(account_id)
        secret = generate_secret()
        updated = await self._store.rotate_secret(account_id, secret, self._clock.now())
        if updated is None:
            raise NotFoundError(f"no customer {account_id}")
        return Configured(updated, secret)

    async def deliveries(
        self,
        account_id: str,
        *,
        status: str | None = None,
        message_id: str | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        state = None
        if status:
            try:
                state = DeliveryState(status.strip().upper())
            except ValueError:
                raise InvalidRequestError(
                    "status must be one of " + ", ".join(s.value for s in DeliveryState)
                ) from None
        return await self._store.list_deliveries(
            account_id,
            status=state,
            message_id=message_id or None,
            limit=max(1, min(limit, MAX_LIST)),
        )

    async def delivery(self, account_id: str, delivery_id: str) -> WebhookDelivery:
        found = await self._store.get_delivery(account_id, delivery_id)
        if found is None:
            raise NotFoundError(f"no delivery {delivery_id}")
        return found

    async def replay(self, account_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivery again, now, with the same webhook-id and a fresh retry schedule."""
        await self.delivery(account_id, delivery_id)
        replayed = await self._store.replay(account_id, delivery_id, self._clock.now())
        if replayed is None:
            raise InvalidRequestError("an attempt of this delivery is in flight; try again soon")
        self._on_queued()
        return replayed

    async def _check(self, url: str) -> None:
        if len(url) > MAX_URL_LENGTH:
            raise InvalidRequestError(f"the callback URL is longer than {MAX_URL_LENGTH}")
        try:
            await self._check_url(url)
        except DestinationError as exc:
            raise InvalidRequestError(f"callback URL refused: {exc.reason}") from None


def _subscription(events: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(str(event).strip().lower() for event in events)
    unknown = chosen - EVENT_SUBSCRIPTIONS
    if unknown:
        raise InvalidRequestError(
            f"unknown callback events {sorted(unknown)}; known: {sorted(EVENT_SUBSCRIPTIONS)}"
        )
    return chosen
