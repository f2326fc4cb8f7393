"""CheckDaq with remote sources: their headers read over ssh (a real sshd on 127.0.0.1),
never their data units, and the product planned as if they were here."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from astropy.io import fits
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol

from dpmd.config import build_config
from dpmd.locations import RemoteFile
from dpmd.stages.remote_headers import RemoteHeadersError, read_remote_headers
from dpmd.workers import ProcessRunner
from tests.fitsfactory import image, image_hdu, table_hdu, write_fits
from tests.sshd import HOST_ALIAS, SshServerCase, free_port

DATA_BYTES = 1 << 40
"""The data unit of the sparse file: a tebibyte, that reading would take hours."""
DATA_SPAN = -(-DATA_BYTES // 2880) * 2880


def spec_of(daq_id: str, here: str, there: str) -> dict[str, Any]:
    """A keyword source, a local detector file and a second file at ``there``."""
    return {
        "id": daq_id,
        "sources": [
            {"type": "fitsKeywords", "sourceName": "ocm", "keywords": [
                {"type": "valueKeyword", "name": "OBJECT", "value": "NGC 253"}]},
            {"type": "fitsFile", "sourceName": "dcs", "location": here},
            {"type": "fitsFile", "sourceName": "fcs", "location": there,
             "keywordRules": [{"type": "filter", "selectionPatterns": ["+e INS * *"]}]},
        ],
        "target": {"fileId": daq_id},
    }  # fmt: skip


def without_date(header: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned header but DATE (the moment of each dry run)."""
    return [entry for entry in header if entry["keyword"] != "DATE"]


def sparse_source(path: Path) -> tuple[int, int]:
    """A FITS file with a huge data unit that is a hole, then one more extension;
    ``(header bytes, file size)``."""
    primary = fits.PrimaryHDU().header.tostring().encode()
    huge = fits.ImageHDU(name="HUGE").header
    huge["BITPIX"] = 8
    huge["NAXIS"] = 1
    huge.insert("NAXIS", ("NAXIS1", DATA_BYTES), after=True)
    last = fits.ImageHDU(image((4, 4)), name="LAST")
    headers = [primary, huge.tostring().encode(), last.header.tostring().encode()]
    with open(path, "wb") as stream:
        stream.write(headers[0] + headers[1])
        stream.seek(DATA_SPAN, os.SEEK_CUR)
        stream.write(headers[2] + last.data.astype(">i2").tobytes().ljust(2880, b"\0"))
        size = stream.tell()
    return sum(map(len, headers)), size


class RemoteCheckTests(SshServerCase):
    def setUp(self) -> None:
        super().setUp()
        self.detector = write_fits(str(self.root / "dcs.fits"),
                                   [("INSTRUME", "TEST"), ("HIERARCH ESO DET DIT", 1.5)],
                                   extensions=[image_hdu("CHIP1", seed=1)])  # fmt: skip

    @inlineCallbacks
    def test_a_remote_source_is_planned_as_the_same_file_here(self) -> None:
        """Primary data, several extensions, a header of many blocks, zero padding: what
        the remote headers give is what the file read here gives."""
        cards = [(f"HIERARCH ESO INS K{n} VAL", n) for n in range(300)]
        focal = self.far / "fcs.fits"
        write_fits(str(focal), [("HIERARCH ESO INS FILT1 ID", "R"), *cards],
                   data=image((30, 20), seed=3),
                   extensions=[table_hdu("FCS"), image_hdu("SCI", (64, 64), seed=4)])  # fmt: skip
        with open(focal, "ab") as stream:
            stream.write(b"\0" * 2880)  # padding after the last HDU, as some writers add
        caller = yield self.start()
        here = yield caller.call("/daq/CheckDaq", spec_of("CHR.1", self.detector, str(focal)))
        there = yield caller.call("/daq/CheckDaq",
                                  spec_of("CHR.1", self.detector, f"{HOST_ALIAS}:{focal}"))
        self.assertEqual((here["problems"], there["problems"]), ([], []))
        self.assertTrue(there["ok"])
        self.assertEqual(without_date(there["header"]), without_date(here["header"]))
        self.assertEqual(there["hdus"], here["hdus"])
        self.assertEqual(there["predicted_bytes"], here["predicted_bytes"])
        origin = {entry["keyword"]: entry["source"] for entry in there["header"]}
        self.assertEqual(origin["HIERARCH ESO INS K299 VAL"], "fcs")
        self.assertEqual([(hdu["origin"], hdu["extname"]) for hdu in there["hdus"]],
                         [("(new)", None), ("dcs", "CHIP1"), ("fcs", "FCS"), ("fcs", "SCI")])

    @inlineCallbacks
    def test_the_data_units_are_not_read(self) -> None:
        """A tebibyte of data between two headers: only the header blocks come over ssh,
        and the plan still sees the extension after it."""
        header_bytes, size = sparse_source(self.far / "huge.fits")
        remote = RemoteFile(HOST_ALIAS, str(self.far / "huge.fits"))
        config = build_config({"transfer.ssh_options": self.sshd.ssh_options}, environ={})
        headers = yield read_remote_headers(ProcessRunner(reactor), reactor, config.transfer,
                                            remote, timeout=30)  # fmt: skip
        self.assertEqual(headers.size, size)
        self.assertEqual(headers.header_bytes, header_bytes)
        self.assertEqual(sorted(headers.blocks), [0, 2880, 5760 + DATA_SPAN])
        self.assertLess(headers.received, header_bytes * 4 // 3 + 200)  # base64, a few words

        caller = yield self.start(**{"transfer.timeout": 30})
        started = time.monotonic()
        answer = yield caller.call("/daq/CheckDaq",
                                   spec_of("CHR.2", self.detector, f"{HOST_ALIAS}:{remote.path}"))
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual([(hdu["extname"], hdu["data_size"]) for hdu in answer["hdus"][2:]],
                         [("HUGE", DATA_BYTES), ("LAST", 32)])  # fmt: skip
        self.assertGreater(answer["predicted_bytes"], DATA_BYTES)
        self.assertTrue(any("bytes; the workspace has" in p for p in answer["problems"]), answer)

    @inlineCallbacks
    def test_an_unreachable_host_is_a_problem_within_the_timeout(self) -> None:
        silent = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        refused = free_port()
        with open(self.sshd.ssh_config, "a") as config:
            for alias, port in (("silent-host", silent.getHost().port), ("refusing-host", refused)):
                config.write(f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n"
                             "  BatchMode yes\n  ConnectTimeout 60\n")  # fmt: skip
        caller = yield self.start(**{"transfer.timeout": 2})
        spec = spec_of("CHR.3", "silent-host:/data/fcs.fits", "refusing-host:/data/fcs.fits")
        started = time.monotonic()
        answer = yield caller.call("/daq/CheckDaq", spec)
        self.assertLess(time.monotonic() - started, 2 + 5)
        self.assertFalse(answer["ok"])
        self.assertEqual((answer["header"], answer["hdus"]), ([], []))
        stalled, unreachable = answer["problems"]
        self.assertEqual(stalled, "source 'dcs': no complete answer from silent-host in time "
                                  "while reading the headers of silent-host:/data/fcs.fits; "
                                  "stopped (the dry run gives remote sources 2 s: "
                                  "transfer.timeout)")  # fmt: skip
        self.assertTrue(unreachable.startswith("source 'fcs': cannot reach refusing-host over "
                                               "ssh: "), unreachable)  # fmt: skip
        self.assertIn("Connection refused", unreachable)

    @inlineCallbacks
    def test_a_bad_remote_file_is_named(self) -> None:
        (self.far / "notes.txt").write_text("SIMPLE? no, just text\n" * 200)
        (self.far / "folder.fits").mkdir()
        whole = Path(write_fits(str(self.far / "cut.fits"), [("INSTRUME", "X")],
                                extensions=[image_hdu("SCI", (64, 64))])).read_bytes()
        (self.far / "cut.fits").write_bytes(whole[: 2 * 2880 + 2880])
        caller = yield self.start()
        cases = {
            "gone.fits": "source 'fcs': {where} does not exist",
            "folder.fits": "source 'fcs': {where} is not a regular file",
            "notes.txt": "source 'fcs': {where} is not a FITS file",
            "cut.fits": "source 'fcs': {where} is not valid FITS: truncated: HDU 1 ends at byte "
                        "14400, file has 8640",
        }  # fmt: skip
        for name, problem in cases.items():
            where = f"{HOST_ALIAS}:{self.far / name}"
            answer = yield caller.call("/daq/CheckDaq", spec_of("CHR.4", self.detector, where))
            self.assertEqual(answer["problems"], [problem.format(where=where)])
            self.assertEqual((answer["header"], answer["hdus"]), ([], []))

    @inlineCallbacks
    def test_the_headers_are_bounded_in_bytes(self) -> None:
        focal = write_fits(str(self.far / "fcs.fits"), [(f"K{n}", n) for n in range(200)])
        config = build_config({"transfer.ssh_options": self.sshd.ssh_options}, environ={})
        with self.assertRaises(RemoteHeadersError) as refused:
            yield read_remote_headers(ProcessRunner(reactor), reactor, config.transfer,
                                      RemoteFile(HOST_ALIAS, focal), timeout=30, limit=4 * 2880)
        self.assertEqual(str(refused.exception), f"the headers of {HOST_ALIAS}:{focal} are "
                                                 f"longer than {4 * 2880} bytes; not read further")
