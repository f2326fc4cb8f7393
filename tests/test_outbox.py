"""The lines a session holds for a client that is not reading."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dpmd.rpc.outbox import COMPACT_AFTER, Outbox


def drain(outbox: Outbox) -> list[bytes]:
    return list(iter(outbox.next_line, None))


class OutboxTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.outbox = Outbox()

    def test_lines_come_out_in_the_order_they_were_held(self) -> None:
        self.outbox.hold(b"reply 1")
        self.outbox.hold_notification(b"tick", None)
        self.outbox.hold(b"reply 2")
        self.assertEqual(drain(self.outbox), [b"reply 1", b"tick", b"reply 2"])
        self.assertIsNone(self.outbox.next_line())

    def test_a_newer_notification_with_the_same_key_replaces_the_unsent_one(self) -> None:
        key = ("/daq/status", "A")
        self.outbox.hold(b"reply 1")
        self.outbox.hold_notification(b"A v1", key)
        self.outbox.hold_notification(b"B v1", ("/daq/status", "B"))
        self.outbox.hold_notification(b"A v2", key)
        self.outbox.hold_notification(b"untitled", None)
        self.outbox.hold_notification(b"untitled", None)
        self.assertEqual(
            drain(self.outbox), [b"reply 1", b"B v1", b"A v2", b"untitled", b"untitled"]
        )

    def test_empty_slots_are_dropped_in_the_same_queue(self) -> None:
        """The session tests ``items`` itself on every reply: it must never be replaced."""
        items = self.outbox.items
        for n in range(10 * COMPACT_AFTER):
            self.outbox.hold_notification(b"A %d" % n, ("/t", "A"))
        self.assertIs(self.outbox.items, items)
        self.assertLessEqual(len(items), 2 * COMPACT_AFTER + 2)
        self.assertEqual(drain(self.outbox), [b"A %d" % (10 * COMPACT_AFTER - 1)])

    def test_clear_forgets_lines_and_keys(self) -> None:
        self.outbox.hold(b"reply")
        self.outbox.hold_notification(b"A v1", ("/t", "A"))
        self.outbox.clear()
        self.assertIsNone(self.outbox.next_line())
        self.outbox.hold_notification(b"A v2", ("/t", "A"))
        self.assertEqual(drain(self.outbox), [b"A v2"])
