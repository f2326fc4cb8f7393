"""The line framing both ends of the protocol share."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dpmd.lines import LineBuffer, LineTooLong


def drain(buffer: LineBuffer) -> list[bytes]:
    lines = []
    while (line := buffer.next_line()) is not None:
        lines.append(line)
    return lines


class LineBufferTests(SynchronousTestCase):
    def test_lines_split_across_reads_come_out_whole_one_at_a_time(self) -> None:
        buffer = LineBuffer(100)
        for piece in [b'{"a"', b": 1}\n{", b'"b": 2}\r\n\n  \r\n{"c"']:
            buffer.feed(piece)
        self.assertEqual(buffer.next_line(), b'{"a": 1}')
        self.assertEqual(buffer.next_line(), b'{"b": 2}')
        self.assertIsNone(buffer.next_line(), "blank lines are skipped; the third is incomplete")
        buffer.feed(b": 3}\n")
        self.assertEqual(drain(buffer), [b'{"c": 3}'])

    def test_a_line_at_the_bound_passes_and_one_byte_more_does_not(self) -> None:
        buffer = LineBuffer(5)
        buffer.feed(b"12345\r\n123456\n")
        self.assertEqual(buffer.next_line(), b"12345")
        self.assertRaises(LineTooLong, buffer.next_line)

    def test_an_unfinished_line_over_the_bound_is_refused_before_its_end(self) -> None:
        buffer = LineBuffer(5)
        buffer.feed(b"123")
        self.assertIsNone(buffer.next_line())
        buffer.feed(b"456")
        self.assertRaises(LineTooLong, buffer.next_line)

    def test_clear_forgets_what_was_received(self) -> None:
        buffer = LineBuffer(100)
        buffer.feed(b"half a li")
        self.assertIsNone(buffer.next_line())
        buffer.clear()
        buffer.feed(b"new\n")
        self.assertEqual(drain(buffer), [b"new"])
