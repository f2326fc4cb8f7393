"""Publish/subscribe over the JSON-RPC sessions.

A topic is a name; a subscriber is any object with ``send_notification``
(the protocol sessions).  Publishing never fails because of one subscriber:
a session that is gone simply stops receiving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Subscriber(Protocol):
    """What a topic sends notifications to: a client session, or an in-process observer."""

    def send_notification(
        self, topic: str, params: Any, coalesce_key: str | None = None
    ) -> None: ...


class UnknownTopic(KeyError):
    """Raised for a topic name that no part of the server publishes."""

    def __init__(self, topic: str, known: list[str]) -> None:
        super().__init__(topic)
        self.topic = topic
        self.known = known

    def __str__(self) -> str:
        return f"unknown topic {self.topic!r} (topics: {', '.join(self.known)})"


class TopicHub:
    """The topics of one server and who listens to each."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._on_subscribe: dict[str, Callable[[Subscriber], None]] = {}

    def add_topic(
        self, topic: str, on_subscribe: Callable[[Subscriber], None] | None = None
    ) -> None:
        """Declare a topic; ``on_subscribe`` may greet a new subscriber (a first sample)."""
        self._subscribers.setdefault(topic, [])
        if on_subscribe is not None:
            self._on_subscribe[topic] = on_subscribe

    @property
    def topics(self) -> list[str]:
        return sorted(self._subscribers)

    def _listeners(self, topic: str) -> list[Subscriber]:
        try:
            return self._subscribers[topic]
        except KeyError:
            raise UnknownTopic(topic, self.topics) from None

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        """Subscribe; subscribing twice is the same as once."""
        listeners = self._listeners(topic)
        if subscriber not in listeners:
            listeners.append(subscriber)
        greet = self._on_subscribe.get(topic)
        if greet is not None:
            greet(subscriber)

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        listeners = self._listeners(topic)
        if subscriber in listeners:
            listeners.remove(subscriber)

    def unsubscribe_all(self, subscriber: Subscriber) -> None:
        for listeners in self._subscribers.values():
            if subscriber in listeners:
                listeners.remove(subscriber)

    def subscriber_count(self, topic: str) -> int:
        return len(self._listeners(topic))

    def publish(self, topic: str, params: Any, coalesce_key: str | None = None) -> None:
        """Send ``params`` to every subscriber of ``topic``, in subscription order."""
        for subscriber in list(self._listeners(topic)):
            subscriber.send_notification(topic, params, coalesce_key)
