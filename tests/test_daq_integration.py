"""The /daq interface end to end: a real server, real sockets, the real merger, astropy files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from astropy.io import fits
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

import dpmd
from tests.fitsfactory import image_hdu, open_verified, table_hdu, write_fits, write_raw_source
from tests.rpcclient import RpcError, start_server
from tests.test_twistd import twistd


def product_spec(daq_id: str, root: Path, **extra: Any) -> dict[str, Any]:
    """Two sources made by astropy: a detector file and a focal-plane file."""
    detector = write_fits(
        str(root / "dcs.fits"),
        [("INSTRUME", "TEST"), ("HIERARCH ESO DET DIT", 1.5)],
        extensions=[image_hdu("CHIP1", seed=1), image_hdu("CHIP2", seed=2)],
    )
    write_fits(  # referred to relative to dataroot below
        str(root / "fcs.fits"),
        [("HIERARCH ESO INS FILT1 ID", "R"), ("HIERARCH ESO INS TEMP1 VAL", 3.0)],
        extensions=[table_hdu("FCS")],
    )
    spec = {
        "id": daq_id,
        "sources": [
            {"type": "fitsKeywords", "sourceName": "ocm", "keywords": [
                {"type": "valueKeyword", "name": "OBJECT", "value": "NGC 253"}]},
            {"type": "fitsFile", "sourceName": "dcs", "location": detector},
            {"type": "fitsFile", "sourceName": "fcs", "location": "fcs.fits",
             "keywordRules": [{"type": "filter", "selectionPatterns": ["+e INS FILT* *"]}]},
        ],
        "target": {"fileId": daq_id},
    }  # fmt: skip
    spec.update(extra)
    return spec


class ServerTests(TestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

    @inlineCallbacks
    def start(self, **values: Any) -> Any:
        self.service, caller = yield start_server(self, self.root, **values)
        return caller

    @inlineCallbacks
    def test_queue_to_completed_with_a_correct_product(self) -> None:
        caller = yield self.start()
        inbox = self.root / "olas"
        inbox.mkdir()
        spec = product_spec("INT.1", self.root,
                            receivers=[{"type": "olasReceiver", "path": str(inbox)}])  # fmt: skip
        reply = yield caller.call("/daq/QueueDaq", json.dumps(spec))
        self.assertEqual(reply, {"id": "INT.1", "error": False})
        final = yield caller.wait_for("INT.1", "Completed")
        product = inbox / "INT.1.fits"
        self.assertEqual(final["result"], str(product))
        self.assertFalse(final["error"])
        substates = [n["substate"] for n in caller.statuses("INT.1")]
        self.assertEqual(
            [s for i, s in enumerate(substates) if i == 0 or s != substates[i - 1]],
            ["Scheduled", "Collecting", "Merging", "Releasing", "Completed"],
        )
        with open_verified(str(product)) as hdus:
            header = hdus[0].header
            self.assertEqual(header["OBJECT"], "NGC 253")
            self.assertEqual(header["INSTRUME"], "TEST")
            self.assertEqual(header["HIERARCH ESO INS FILT1 ID"], "R")
            self.assertNotIn("HIERARCH ESO INS TEMP1 VAL", header)
            self.assertEqual(header["ARCFILE"], "INT.1.fits")
            self.assertEqual([hdu.name for hdu in hdus[1:]], ["CHIP1", "CHIP2", "FCS"])
            self.assertTrue((hdus["CHIP2"].data == image_hdu("CHIP2", seed=2).data).all())
        # Deterministic after Completed: the final status, from memory or from the store.
        status = yield caller.call("/daq/GetDaqStatus", "INT.1")
        self.assertEqual((status["substate"], status["result"]), ("Completed", str(product)))
        internal = yield caller.wait_archived("INT.1")
        self.assertTrue(internal["detail"]["archived"])
        provenance = yield caller.call("/daq/GetDaqProvenance", "INT.1")
        origin = {entry["keyword"]: entry for entry in provenance}
        self.assertEqual(origin["OBJECT"]["source"], "ocm")
        self.assertEqual(origin["INSTRUME"]["source"], "dcs")
        self.assertEqual(origin["HIERARCH ESO INS FILT1 ID"]["source"], "fcs")
        self.assertEqual(origin["ARCFILE"]["source"], "(dpmd-merge)")
        cards = sum(1 for card in header.cards if card.keyword)
        self.assertEqual(len(provenance), cards, "one entry per card of the product's header")
        log = Path(internal["detail"]["workspace"]) / "logs" / "merge.log"
        self.assertTrue(log.exists())

    def other_file_system(self) -> Path:
        """A folder on another file system than the workspace, where hard links fail."""
        shm = Path("/dev/shm")
        if not shm.is_dir() or shm.stat().st_dev == self.root.stat().st_dev:
            raise SkipTest("no second file system (/dev/shm) to release across")
        folder = Path(tempfile.mkdtemp(prefix="dpmd-release-", dir=shm))
        self.addCleanup(shutil.rmtree, folder, True)
        return folder

    @inlineCallbacks
    def test_release_across_file_systems_symlinks_or_copies(self) -> None:
        far = self.other_file_system()
        caller = yield self.start(**{"release.allowed": [".", str(far)]})
        (far / "linked").mkdir()
        (far / "copied").mkdir()
        receivers = [
            {"type": "olasReceiver", "path": str(far / "linked")},
            {"type": "olasReceiver", "path": str(far / "copied"),
             "options": {"allowSymlink": False}},
        ]  # fmt: skip
        yield caller.call("/daq/QueueDaq", product_spec("INT.6", self.root, receivers=receivers))
        yield caller.wait_for("INT.6", "Completed")
        internal = yield caller.wait_archived("INT.6")
        linked, copied = far / "linked" / "INT.6.fits", far / "copied" / "INT.6.fits"
        self.assertTrue(linked.is_symlink())
        self.assertFalse(copied.is_symlink())
        self.assertEqual(copied.read_bytes(), linked.read_bytes())
        self.assertEqual(
            {key: entry["how"] for key, entry in internal["detail"]["released"].items()},
            {"0": "symlink", "1": "copy"},
        )
        # What a symlink points at never moves, not even when the DAQ is archived.
        self.assertEqual(linked.resolve(), self.root / "dpm" / "linked" / "INT.6" / "INT.6.fits")
        self.assertFalse(any(Path(internal["detail"]["workspace"]).glob("*.fits")))
        copied_files = sorted(p.name for p in (far / "copied").iterdir())
        self.assertEqual(copied_files, ["INT.6.fits", "INT.6.fits.json"])

    @inlineCallbacks
    def test_refusals_are_daq_exceptions(self) -> None:
        caller = yield self.start()
        spec = product_spec("INT.2", self.root)
        first = yield caller.call("/daq/QueueDaq", spec)  # an object is accepted too
        again = yield caller.call("/daq/QueueDaq", spec)  # a lost reply may be asked again
        self.assertEqual(again, first)
        with self.assertRaises(RpcError) as duplicate:
            yield caller.call("/daq/QueueDaq", {**spec, "sources": spec["sources"][:2]})
        self.assertEqual(duplicate.exception.code, -32000)
        self.assertEqual(duplicate.exception.data["exception"], "DaqException")
        self.assertEqual(duplicate.exception.data["id"], "INT.2")
        bad = {
            **spec,
            "id": "INT.3",
            "sources": [
                {"type": "fitsFile", "sourceName": "x", "location": "a.fits", "colour": "red"}
            ],
        }
        with self.assertRaises(RpcError) as invalid:
            yield caller.call("/daq/QueueDaq", json.dumps(bad))
        self.assertIn("$.sources[0]", invalid.exception.data["message"])
        with self.assertRaises(RpcError) as wrong_type:
            yield caller.call("/daq/QueueDaq", 42)
        self.assertEqual(wrong_type.exception.code, -32602)
        self.assertIn("specification", str(wrong_type.exception))

    @inlineCallbacks
    def test_missing_source_then_retry_completes(self) -> None:
        caller = yield self.start()
        spec = product_spec("INT.4", self.root)
        late = self.root / "late.fits"
        spec["sources"].append({"type": "fitsFile", "sourceName": "late", "location": str(late)})
        yield caller.call("/daq/QueueDaq", json.dumps(spec))
        for _ in range(500):
            status = yield caller.call("/daq/GetDaqStatus", "INT.4")
            if status["error"]:
                break
        [alert] = status["alerts"]
        self.assertEqual((alert["category"], alert["key"]), ("SourceFileCollectionError", "late"))
        write_fits(str(late), [("HIERARCH ESO TEL AIRM START", 1.2)])
        self.assertIsNone((yield caller.call("/daq/RetryMergeDaq", "INT.4")))
        final = yield caller.wait_for("INT.4", "Completed")
        with fits.open(final["result"]) as hdus:
            self.assertEqual(hdus[0].header["HIERARCH ESO TEL AIRM START"], 1.2)

    @inlineCallbacks
    def test_abort_a_running_merge(self) -> None:
        caller = yield self.start()
        big = write_raw_source(str(self.root / "big.fits"), 64 << 20, extensions=4)
        spec = product_spec("INT.5", self.root)
        spec["sources"].append({"type": "fitsFile", "sourceName": "big", "location": big})
        yield caller.call("/daq/QueueDaq", json.dumps(spec))
        yield caller.wait_for("INT.5", "Merging")
        reply = yield caller.call("/daq/AbortDaq", "INT.5")
        self.assertEqual(reply["id"], "INT.5")
        final = caller.statuses("INT.5")[-1]
        self.assertEqual(final["substate"], "Aborted")
        archived = self.root / "dpm" / "archive" / "INT.5"
        self.assertEqual([p.name for p in archived.iterdir() if p.suffix == ".fits"], [])
        self.assertEqual(list(archived.glob(".*")), [])


class ChildServerTestCase(TestCase):
    """Runs ``twistd dpmd`` as a child process in a temporary dataroot."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.config = self.root / "dpmd.yaml"
        self.config.write_text("listen: ['tcp:0:interface=127.0.0.1']\n")

    def start(self) -> tuple[subprocess.Popen[bytes], int]:
        log = self.root / f"twistd-{time.monotonic_ns()}.log"
        process = twistd(self.root, "--config", str(self.config), logfile=log)
        self.addCleanup(process.communicate)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            text = log.read_text() if log.exists() else ""
            for line in text.splitlines():
                if "dpmd serving workspace" in line:
                    return process, int(line.rsplit(":", 1)[1])
            time.sleep(0.05)
        raise AssertionError(f"dpmd did not start: {log.read_text() if log.exists() else ''}")

    def rpc(self, port: int, *requests: tuple[str, list[Any]]) -> list[Any]:
        import socket

        with socket.create_connection(("127.0.0.1", port)) as client:
            for number, (method, params) in enumerate(requests):
                request = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
                client.sendall(json.dumps(request).encode() + b"\n")
            client.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := client.recv(65536):
                data += chunk
        replies = {m["id"]: m for m in map(json.loads, data.splitlines())}
        return [replies[number].get("result", replies[number].get("error"))
                for number in range(len(requests))]  # fmt: skip


class CrashTests(ChildServerTestCase):
    """``kill -9`` of the server while it merges, then a restart: nothing is lost."""

    def test_kill_while_merging_then_restart_finishes_every_daq(self) -> None:
        process, port = self.start()
        big = write_raw_source(str(self.root / "big.fits"), 32 << 20, extensions=4)
        names = ["CRASH.1", "CRASH.2", "CRASH.3"]
        spec = product_spec("CRASH", self.root)  # writes the sources once, before any merge
        spec["sources"].append({"type": "fitsFile", "sourceName": "big", "location": big})
        for name in names:
            spec.update(id=name, target={"fileId": name})
            [reply] = self.rpc(port, ("/daq/QueueDaq", [json.dumps(spec)]))
            self.assertEqual(reply, {"id": name, "error": False})
        merger_pid = self.wait_for_a_merger(port, names)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        for _ in range(500):  # the merger dies with its parent
            try:
                os.kill(merger_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        else:
            self.fail(f"merger {merger_pid} outlived the killed server")
        process, port = self.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            [active] = self.rpc(port, ("/daq/GetActiveDaqs", []))
            if not active:
                break
            time.sleep(0.1)
        self.assertEqual(active, [])
        for name in names:
            [internal] = self.rpc(port, ("/daq/GetInternalDaqStatus", [name]))
            self.assertEqual(internal["status"]["substate"], "Completed", internal)
            with fits.open(internal["status"]["result"], checksum=True) as hdus:
                self.assertEqual(hdus[0].verify_checksum(), 1)
                self.assertEqual(hdus[0].header["ARCFILE"], f"{name}.fits")
                self.assertEqual(
                    [hdu.name for hdu in hdus[1:]],
                    ["CHIP1", "CHIP2", "FCS", "RAW0", "RAW1", "RAW2", "RAW3"],
                )
                self.assertEqual(hdus["RAW3"].header["NAXIS1"], 32 << 20)
        self.rpc(port, ("/dpm/Exit", []))
        self.assertEqual(process.wait(timeout=60), 0)

    def wait_for_a_merger(self, port: int, names: list[str]) -> int:
        """The pid of the first merger seen running for any of ``names``.

        Every DAQ is watched: on a slow disk the first can finish merging while the
        later ones are still being queued.
        """
        requests = [("/daq/GetInternalDaqStatus", [name]) for name in names]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for internal in self.rpc(port, *requests):
                for child in internal["detail"]["processes"]:
                    if child["kind"] == "merge":
                        return int(child["pid"])
            time.sleep(0.005)
        self.fail(f"no merger was seen running: {internal}")


class CheckDaqTests(TestCase):
    """A dry run of a whole DAQ: the same checks, the planned header; nothing written."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

    @inlineCallbacks
    def test_a_good_and_a_bad_specification(self) -> None:
        service, caller = yield start_server(self, self.root)
        spec = product_spec("CHK.1", self.root)
        before = sorted(p.relative_to(self.root) for p in (self.root / "dpm").rglob("*"))
        good = yield caller.call("/daq/CheckDaq", json.dumps(spec))
        self.assertTrue(good["ok"], good["problems"])
        self.assertEqual(good["problems"], [])
        origin = {entry["keyword"]: entry["source"] for entry in good["header"]}
        self.assertEqual((origin["OBJECT"], origin["INSTRUME"]), ("ocm", "dcs"))
        self.assertEqual(len(good["hdus"]), 4)
        self.assertGreater(good["predicted_bytes"], 2880 * 4)

        notes = self.root / "notes.txt"
        notes.write_text("hello")
        bad = {**spec, "id": "CHK.2", "sources": [
            *spec["sources"][:2],
            {"type": "fitsFile", "sourceName": "gone", "location": "/no/such.fits"},
            {"type": "fitsFile", "sourceName": "text", "location": str(notes)}]}  # fmt: skip
        answer = yield caller.call("/daq/CheckDaq", bad)
        self.assertFalse(answer["ok"])
        self.assertEqual(len(answer["problems"]), 2, answer["problems"])
        self.assertIn("source 'gone'", answer["problems"][0])
        self.assertIn("not a FITS file", answer["problems"][1])
        invalid = yield caller.call("/daq/CheckDaq", "{")
        self.assertIn("invalid specification", invalid["problems"][0])

        after = sorted(p.relative_to(self.root) for p in (self.root / "dpm").rglob("*"))
        files = [[p for p in listing if "sqlite3" not in str(p)] for listing in (before, after)]
        self.assertEqual(files[1], files[0], "nothing written")
        active = yield caller.call("/daq/GetActiveDaqs")
        self.assertEqual(active, [], "nothing queued")
        with self.assertRaises(RpcError):
            yield caller.call("/daq/GetDaqStatus", "CHK.1")
        del service


    @inlineCallbacks
    def test_an_id_already_taken(self) -> None:
        """The same bytes again would be accepted idempotently; different ones refused."""
        service, caller = yield start_server(self, self.root)
        text = json.dumps(product_spec("CHK.3", self.root))
        fresh = yield caller.call("/daq/CheckDaq", text)
        self.assertEqual((fresh["ok"], fresh["problems"], fresh["notes"]), (True, [], []))
        yield caller.call("/daq/QueueDaq", text)
        yield caller.wait_for("CHK.3", "Completed")
        internal = yield caller.wait_archived("CHK.3")
        again = yield caller.call("/daq/CheckDaq", text)
        self.assertTrue(again["ok"], again["problems"])
        self.assertEqual(again["problems"], [])
        self.assertEqual(len(again["notes"]), 1, again)
        self.assertIn("'CHK.3' is already archived (Completed) with this very", again["notes"][0])
        self.assertIn("idempotently", again["notes"][0])
        changed = json.dumps(product_spec("CHK.3", self.root, receivers=[]))
        refused = yield caller.call("/daq/CheckDaq", changed)
        self.assertFalse(refused["ok"])
        self.assertEqual(refused["notes"], [])
        self.assertEqual(refused["problems"], [
            "DAQ id 'CHK.3' is already archived (Completed) with a different specification: "
            "QueueDaq would refuse it"])  # fmt: skip
        with self.assertRaises(RpcError):  # as CheckDaq foretold
            yield caller.call("/daq/QueueDaq", changed)
        after = yield caller.call("/daq/GetInternalDaqStatus", "CHK.3")
        self.assertEqual(after["detail"]["history"], internal["detail"]["history"])
        del service

    @inlineCallbacks
    def test_an_id_still_under_way(self) -> None:
        """A DAQ not yet archived (waiting for a source) is named with its substate."""
        service, caller = yield start_server(self, self.root)
        spec = product_spec("CHK.4", self.root)
        spec["sources"].append({"type": "fitsFile", "sourceName": "late",
                                "location": str(self.root / "late.fits")})  # fmt: skip
        text = json.dumps(spec)
        yield caller.call("/daq/QueueDaq", text)
        for _ in range(500):
            status = yield caller.call("/daq/GetDaqStatus", "CHK.4")
            if status["error"]:
                break
        same = yield caller.call("/daq/CheckDaq", text)
        self.assertIn("'CHK.4' is already queued (Collecting) with this very", same["notes"][0])
        self.assertIn("source 'late'", same["problems"][0])
        other = yield caller.call("/daq/CheckDaq", json.dumps({**spec, "receivers": []}))
        self.assertIn("'CHK.4' is already queued (Collecting) with a different specification",
                      other["problems"][0])  # fmt: skip
        active = yield caller.call("/daq/GetActiveDaqs")
        self.assertEqual([status["id"] for status in active], ["CHK.4"])
        del service


class AuditTests(TestCase):
    """``fsck``: a workspace with planted faults, before and after the repair."""

    @inlineCallbacks
    def test_planted_faults_are_found_then_repaired(self) -> None:
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        service, caller = yield start_server(self, root)
        yield caller.call("/daq/QueueDaq", product_spec("FSCK.1", root))
        yield caller.wait_for("FSCK.1", "Completed")
        yield caller.wait_archived("FSCK.1")
        yield caller.call("/daq/QueueDaq", product_spec("FSCK.2", root))
        yield caller.wait_for("FSCK.2", "Completed")
        internal = yield caller.wait_archived("FSCK.2")
        for _ in range(100):  # the folder is filed away just after the final commit
            if Path(internal["detail"]["workspace"]).exists():
                break
            yield deferLater(reactor, 0.02, lambda: None)
        workspace = root / "dpm"
        (workspace / "daqs" / "STRAY" / "logs").mkdir(parents=True)
        (workspace / "archive" / "ORPHAN").mkdir()
        shutil.rmtree(workspace / "archive" / "FSCK.1")
        stale = root / "released" / ".OLD.fits.dpmd-part"
        stale.write_bytes(b"half a product")
        (workspace / "linked" / "FSCK.2").mkdir(parents=True)
        found = yield caller.call("/dpm/AuditWorkspace", False)
        kinds = sorted((p["kind"], Path(p["path"]).name, p["repaired"]) for p in found["problems"])
        self.assertEqual(kinds, [
            ("folder-without-record", "ORPHAN", False),
            ("folder-without-record", "STRAY", False),
            ("record-without-folder", "FSCK.1", False),
            ("temporary", ".OLD.fits.dpmd-part", False),
            ("unreferenced-linked", "FSCK.2", False),
        ])  # fmt: skip
        self.assertTrue(stale.exists(), "without repair nothing is changed")
        repaired = yield caller.call("/dpm/AuditWorkspace", True)
        self.assertTrue(all(p["repaired"] for p in repaired["problems"]), repaired)
        self.assertFalse(stale.exists())
        self.assertFalse((workspace / "daqs" / "STRAY").exists())
        again = yield caller.call("/dpm/AuditWorkspace")
        self.assertEqual(again["problems"], [])
        internal = yield caller.call("/daq/GetInternalDaqStatus", "FSCK.1")
        self.assertTrue(internal["detail"]["workspace_removed"])
        del service

    @inlineCallbacks
    def test_an_unfinished_daqs_missing_folder_is_found_then_made_again(self) -> None:
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        service, caller = yield start_server(self, root)
        spec = product_spec("FSCK.3", root)
        late = root / "late.fits"
        spec["sources"].append({"type": "fitsFile", "sourceName": "late", "location": str(late)})
        yield caller.call("/daq/QueueDaq", json.dumps(spec))
        for _ in range(500):  # it waits in Collecting: its last source is still to come
            status = yield caller.call("/daq/GetDaqStatus", "FSCK.3")
            if status["error"]:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(status["substate"], "Collecting")
        folder = root / "dpm" / "daqs" / "FSCK.3"
        shutil.rmtree(folder)
        found = yield caller.call("/dpm/AuditWorkspace", False)
        [problem] = found["problems"]
        self.assertEqual((problem["kind"], problem["path"], problem["repaired"]),
                         ("record-without-folder", str(folder), False))  # fmt: skip
        self.assertIn("DAQ FSCK.3 is Collecting, not finished, and its folder is gone",
                      problem["detail"])  # fmt: skip
        self.assertIn("repair makes it again", problem["detail"])
        self.assertFalse(folder.exists(), "without repair nothing is changed")
        repaired = yield caller.call("/dpm/AuditWorkspace", True)
        self.assertEqual([p["repaired"] for p in repaired["problems"]], [True])
        self.assertEqual((folder / "specification.json").read_bytes(), json.dumps(spec).encode())
        again = yield caller.call("/dpm/AuditWorkspace")
        self.assertEqual(again["problems"], [])
        write_fits(str(late), [("HIERARCH ESO TEL AIRM START", 1.2)])
        yield caller.call("/daq/RetryMergeDaq", "FSCK.3")
        final = yield caller.wait_for("FSCK.3", "Completed")
        with fits.open(final["result"], checksum=True) as hdus:
            self.assertEqual(hdus[0].verify_checksum(), 1)
        del service


class ManifestTests(TestCase):
    """The manifest beside each product, checked against an independent computation."""

    @inlineCallbacks
    def test_the_manifest_says_what_an_archive_can_verify(self) -> None:
        import hashlib

        root = Path(self.mktemp()).absolute()
        root.mkdir()
        service, caller = yield start_server(self, root)
        with_manifest, without = root / "olas", root / "fits-only"
        with_manifest.mkdir()
        without.mkdir()
        receivers = [{"type": "olasReceiver", "path": str(with_manifest)},
                     {"type": "olasReceiver", "path": str(without),
                      "options": {"manifest": False}}]  # fmt: skip
        text = json.dumps(product_spec("MAN.1", root, receivers=receivers))
        yield caller.call("/daq/QueueDaq", text)
        yield caller.wait_for("MAN.1", "Completed")
        product = with_manifest / "MAN.1.fits"
        manifest = json.loads((with_manifest / "MAN.1.fits.json").read_text())
        data = product.read_bytes()
        self.assertEqual(manifest["product"]["size"], len(data))
        self.assertEqual(manifest["product"]["blake2b"], hashlib.blake2b(data).hexdigest())
        with fits.open(product, checksum=True) as hdus:
            self.assertEqual(hdus[0].verify_checksum(), 1)
            self.assertEqual(manifest["product"]["checksum"], hdus[0].header["CHECKSUM"])
            self.assertEqual(manifest["product"]["datasum"], hdus[0].header["DATASUM"])
        self.assertEqual(manifest["specification"]["blake2b"],
                         hashlib.blake2b(text.encode()).hexdigest())  # fmt: skip
        sources = {source["name"]: source for source in manifest["sources"]}
        self.assertEqual(sources["dcs"]["size"], (root / "dcs.fits").stat().st_size)
        for name in ("dcs", "fcs"):  # each source's checksum, as collected, as b2sum gives it
            expected = hashlib.sha256((root / f"{name}.fits").read_bytes()).hexdigest()
            self.assertEqual(sources[name]["sha256"], expected, name)
        internal = yield caller.call("/daq/GetInternalDaqStatus", "MAN.1")
        self.assertEqual({source["name"]: source["sha256"]
                          for source in internal["detail"]["sources"]},
                         {name: sources[name]["sha256"] for name in ("dcs", "fcs")})  # fmt: skip
        self.assertEqual(manifest["daq_id"], "MAN.1")
        self.assertEqual(manifest["dpmd_version"], dpmd.__version__)
        self.assertEqual(sorted(p.name for p in without.iterdir()), ["MAN.1.fits"], "off")
        del service
