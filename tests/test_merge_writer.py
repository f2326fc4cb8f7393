"""Atomic output and the in-place roll-back record (dpmd.merge.writer)."""

from __future__ import annotations

import errno
import os

from twisted.trial.unittest import SynchronousTestCase

from dpmd.merge import writer
from dpmd.merge.errors import MergeError, OutputError


class AtomicOutputTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.final = os.path.join(self.directory, "product.fits")

    def test_invisible_until_committed(self) -> None:
        with writer.AtomicOutput(self.final) as out:
            os.write(out.fd, b"data")
            self.assertEqual(os.listdir(self.directory), [])
            out.commit()
        self.assertEqual(os.listdir(self.directory), ["product.fits"])
        with open(self.final, "rb") as stream:
            self.assertEqual(stream.read(), b"data")

    def test_replaces_an_existing_file(self) -> None:
        with open(self.final, "wb") as stream:
            stream.write(b"old")
        with writer.AtomicOutput(self.final, mode=0o600) as out:
            os.write(out.fd, b"new")
            out.commit()
        with open(self.final, "rb") as stream:
            self.assertEqual(stream.read(), b"new")
        self.assertEqual(os.stat(self.final).st_mode & 0o777, 0o600)

    def test_failure_leaves_nothing(self) -> None:
        with self.assertRaises(RuntimeError), writer.AtomicOutput(self.final) as out:
            os.write(out.fd, b"half")
            raise RuntimeError("boom")
        self.assertEqual(os.listdir(self.directory), [])

    def test_named_temporary_without_o_tmpfile(self) -> None:
        real_open = os.open

        def no_tmpfile(path: str, flags: int, *args: int) -> int:
            if flags & os.O_TMPFILE == os.O_TMPFILE:
                raise OSError(errno.EOPNOTSUPP, "not supported")
            return real_open(path, flags, *args)

        self.patch(os, "open", no_tmpfile)
        with self.assertRaises(RuntimeError), writer.AtomicOutput(self.final) as out:
            (name,) = os.listdir(self.directory)
            self.assertTrue(name.startswith(".product.fits.") and name.endswith(".dpmd-tmp"))
            raise RuntimeError("boom")
        self.assertEqual(os.listdir(self.directory), [])
        with writer.AtomicOutput(self.final) as out:
            os.write(out.fd, b"x")
            out.commit()
        self.assertEqual(os.listdir(self.directory), ["product.fits"])

    def test_missing_directory(self) -> None:
        with self.assertRaises(OutputError):
            writer.AtomicOutput(os.path.join(self.directory, "no", "p.fits")).__enter__()


class RollbackTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.target = os.path.join(self.directory, "t.fits")
        self.original = b"H" * 2880 + b"D" * 2880
        with open(self.target, "wb") as stream:
            stream.write(self.original)
        self.rollback = writer.Rollback(self.target)

    def test_restore_undoes_append_and_header(self) -> None:
        self.rollback.save(os.stat(self.target), self.original[:2880], len(self.original))
        self.assertTrue(self.rollback.pending())
        with open(self.target, "r+b") as stream:
            stream.write(b"N" * 2880)
            stream.seek(0, os.SEEK_END)
            stream.write(b"E" * 5760)
        self.assertTrue(writer.recover(self.target))
        with open(self.target, "rb") as stream:
            self.assertEqual(stream.read(), self.original)
        self.assertFalse(self.rollback.pending())
        self.assertFalse(writer.recover(self.target))

    def test_restore_brings_back_padding_after_the_last_hdu(self) -> None:
        """Extensions are appended over zero padding, which a restore puts back."""
        padded = self.original + b"\0" * 5760
        with open(self.target, "ab") as stream:
            stream.write(b"\0" * 5760)
        self.rollback.save(os.stat(self.target), self.original[:2880], len(self.original))
        with open(self.target, "r+b") as stream:
            stream.seek(len(self.original))
            stream.write(b"E" * 2880)
            stream.truncate()  # shorter than the padded original
        self.assertTrue(writer.recover(self.target))
        with open(self.target, "rb") as stream:
            self.assertEqual(stream.read(), padded)

    def test_record_of_another_file_is_refused(self) -> None:
        self.rollback.save(os.stat(self.target), self.original[:2880], len(self.original))
        replacement = self.target + ".new"
        with open(replacement, "wb") as stream:
            stream.write(self.original)
        os.replace(replacement, self.target)
        self.assertRaises(MergeError, writer.recover, self.target)
        self.assertTrue(self.rollback.pending())

    def test_damaged_record(self) -> None:
        with open(self.rollback.path, "wb") as stream:
            stream.write(b'{"size": 1, "ino": 2, "dev": 3, "header": 2880}\nshort')
        self.assertRaises(MergeError, writer.recover, self.target)
        with open(self.rollback.path, "wb") as stream:
            stream.write(b"[1, 2]\n" + b" " * 2880)
        self.assertRaises(MergeError, writer.recover, self.target)
