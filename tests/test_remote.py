"""Remote sources and receivers: rsync over ssh against a real sshd on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from astropy.io import fits
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase

from dpmd.config import build_config
from dpmd.daq.admission.rules import server_problems
from dpmd.locations import RemoteFile, split_location
from dpmd.spec import parse_specification
from tests.fitsfactory import image_hdu, write_fits, write_raw_source
from tests.rpcclient import RpcError
from tests.sshd import HOST_ALIAS, SshServer, SshServerCase
from tests.test_daq_integration import ChildServerTestCase
from tests.waiting import block_until


def transferring(destination: Path) -> list[psutil.Process]:
    """The rsync processes (the client and its receiver) writing to ``destination``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        arguments = process.info["cmdline"] or []
        if arguments and str(destination) == arguments[-1]:
            found.append(process)
    return found


def remote(path: Path) -> str:
    return f"{HOST_ALIAS}:{path}"


def spec_with(daq_id: str, *files: tuple[str, str], **extra: Any) -> dict[str, Any]:
    sources = [{"type": "fitsFile", "sourceName": name, "location": location}
               for name, location in files]  # fmt: skip
    return {"id": daq_id, "sources": sources, "target": {"fileId": daq_id}, **extra}


class LocationTests(SynchronousTestCase):
    def test_remote_and_local_forms(self) -> None:
        self.assertEqual(split_location("/abs/a.fits"), "/abs/a.fits")
        self.assertEqual(split_location("rel/a.fits"), "rel/a.fits")
        self.assertEqual(split_location("localhost:/abs/a.fits"), "/abs/a.fits")
        self.assertEqual(split_location("fcs:/x/a.fits"), RemoteFile("fcs", "/x/a.fits"))
        self.assertEqual(split_location("op@fcs:/x/a.fits"), RemoteFile("fcs", "/x/a.fits", "op"))
        self.assertEqual(split_location("dir/with:colon.fits"), "dir/with:colon.fits")

    def test_hostile_locations_are_refused_naming_the_source(self) -> None:
        cases = {
            "-oProxyCommand=sh:/a.fits": "could be read as an option",
            "-oProxyCommand=touch /tmp/x:/a.fits": None,  # a local path: never an argument
            "fcs:-rf": "not absolute",
            "fcs:/-rf": None,
            "fcs:relative/a.fits": "not absolute",
            "fcs:/a\x07.fits": "control characters",
            "-op@fcs:/a.fits": "could be read as an option",
            "fc\x1bs:/a.fits": "control characters",
        }
        for location, problem in cases.items():
            with self.subTest(location=location):
                spec = parse_specification(spec_with("H.1", ("evil", location)))
                messages = server_problems(spec, build_config({}, environ={}))
                if problem is None:
                    self.assertEqual(messages, [])
                    continue
                [message] = messages
                self.assertIn("source 'evil'", message)
                self.assertIn(problem, message)

    def test_hostile_receivers_are_refused(self) -> None:
        for host, path, problem in [("-x", "/in", "option"), ("h", "/in\n", "control"),
                                    ("h\t", "/in", "control")]:  # fmt: skip
            receivers = [{"type": "olasReceiver", "host": host, "path": path}]
            spec = parse_specification(spec_with("H.2", receivers=receivers))
            [message] = server_problems(spec, build_config({}, environ={}))
            self.assertIn("$.receivers[0]", message)
            self.assertIn(problem, message)


class RemoteTests(SshServerCase):

    @inlineCallbacks
    def blocked(self, caller: Any, daq_id: str, seconds: float = 30) -> Any:
        """The DAQ's status once an Error alert blocks it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status = yield caller.call("/daq/GetDaqStatus", daq_id)
            if status["error"]:
                return status
            yield deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"{daq_id} was never blocked: {status}")

    @inlineCallbacks
    def test_collects_several_remote_files(self) -> None:
        caller = yield self.start(**{"limits.transfer": 2})
        tiny = write_fits(str(self.far / "tiny.fits"), [("HIERARCH ESO TEL AIRM START", 1.1)])
        small = write_fits(str(self.far / "small.fits"), [("INSTRUME", "X")],
                           extensions=[image_hdu("SCI", (64, 64))])  # fmt: skip
        big = write_raw_source(str(self.far / "big.fits"), 24 << 20, extensions=1)
        spec = spec_with("REM.1", ("tcs", remote(Path(tiny))), ("dcs", remote(Path(small))),
                         ("big", remote(Path(big))))  # fmt: skip
        yield caller.call("/daq/QueueDaq", json.dumps(spec))
        final = yield caller.wait_for("REM.1", "Completed")
        self.assertFalse(final["error"], final)
        internal = yield caller.call("/daq/GetInternalDaqStatus", "REM.1")
        sources = {s["name"]: s for s in internal["detail"]["sources"]}
        self.assertEqual(sources["big"]["bytes"], os.path.getsize(big))
        self.assertTrue(sources["big"]["local_path"].endswith("/sources/big.fits"))
        self.assertEqual(sources["dcs"]["mtime"], os.path.getmtime(small))  # rsync --times
        with fits.open(final["result"], checksum=True) as hdus:
            self.assertEqual(hdus[0].verify_checksum(), 1)
            self.assertEqual(hdus[0].header["HIERARCH ESO TEL AIRM START"], 1.1)
            self.assertEqual([h.name for h in hdus[1:]], ["SCI", "RAW0"])
            with fits.open(small) as original:
                self.assertTrue((hdus["SCI"].data == original["SCI"].data).all())
        internal = yield caller.wait_archived("REM.1")
        self.assertEqual(list(Path(internal["detail"]["workspace"]).glob("sources/*")), [])

    @inlineCallbacks
    def test_collection_progress_is_exact_and_never_goes_back(self) -> None:
        """Each remote file's size is learnt before its transfer (issue: totals grew and
        percentages fell while rsync's whole percentage was all there was)."""
        caller = yield self.start(**{"limits.transfer": 2, "transfer.rsync_options":
                                     ["--bwlimit=12m"]})  # fmt: skip
        # Long enough to be watched many times over.  rsync reports about once a second, so
        # whether a report falls inside a transfer depends on timing: the bytes of a transfer
        # under way are tested on a fake reactor (test_lifecycle's progress tests).
        first = write_raw_source(str(self.far / "first.fits"), 24 << 20, extensions=1)
        second = write_raw_source(str(self.far / "second.fits"), 16 << 20, extensions=1)
        sizes = {"one": os.path.getsize(first), "two": os.path.getsize(second)}
        spec = spec_with("REM.6", ("one", remote(Path(first))), ("two", remote(Path(second))))
        yield caller.call("/daq/QueueDaq", json.dumps(spec))
        seen: list[tuple[int, int]] = []
        while not any(n["substate"] == "Merging" for n in caller.statuses("REM.6")):
            internal = yield caller.call("/daq/GetInternalDaqStatus", "REM.6")
            progress = internal["detail"]["progress"]
            if progress and progress["stage"] == "collecting" and progress["total"]:
                seen.append((progress["done"], progress["total"]))
                for source in internal["detail"]["sources"]:
                    if source["state"] == "collecting":
                        self.assertEqual(source["size"], sizes[source["name"]])
                        self.assertLessEqual(source["bytes"], source["size"])
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertGreater(len(seen), 3, "the transfers should have been watched")
        full = [total for _, total in seen if total == sum(sizes.values())]
        self.assertTrue(full, seen)
        self.assertTrue(all(total in (sizes["one"], sizes["two"], sum(sizes.values()))
                            for _, total in seen), seen)  # fmt: skip
        done = [d for d, total in seen if total == sum(sizes.values())]
        self.assertEqual(done, sorted(done), "the percentage never goes down")

    @inlineCallbacks
    def test_missing_remote_file_then_retry(self) -> None:
        caller = yield self.start()
        late = self.far / "late.fits"
        yield caller.call("/daq/QueueDaq", spec_with("REM.2", ("fcs", remote(late))))
        blocked = yield caller.wait_for("REM.2", "Collecting")
        status = yield self.blocked(caller, "REM.2")
        [alert] = status["alerts"]
        self.assertEqual((alert["category"], alert["key"]), ("SourceFileCollectionError", "fcs"))
        self.assertIn("No such file", alert["description"])
        self.assertIn(str(late), alert["description"])
        del blocked
        write_fits(str(late), [("HIERARCH ESO INS FILT1 ID", "V")])
        yield caller.call("/daq/RetryMergeDaq", "REM.2")
        final = yield caller.wait_for("REM.2", "Completed")
        with fits.open(final["result"]) as hdus:
            self.assertEqual(hdus[0].header["HIERARCH ESO INS FILT1 ID"], "V")

    @inlineCallbacks
    def test_a_remote_source_broken_when_collected_is_transferred_again_by_the_retry(
        self,
    ) -> None:
        caller = yield self.start()
        far = Path(write_fits(str(self.far / "dcs.fits"), [("INSTRUME", "X")],
                              extensions=[image_hdu("SCI", (64, 64))]))  # fmt: skip
        original = far.read_bytes()
        times = far.stat()
        at = original.index(b"XTENSION")  # broken at its host when it was collected:
        far.write_bytes(original[:at] + b"BROKEN  " + original[at + 8:])  # the same size
        os.utime(far, ns=(times.st_atime_ns, times.st_mtime_ns))
        yield caller.call("/daq/QueueDaq", spec_with("REM.9", ("dcs", remote(far))))
        status = yield self.blocked(caller, "REM.9")
        [alert] = status["alerts"]
        self.assertEqual((alert["category"], alert["terminal"]), ("MergeError", True))
        # Put back, its size and time as the broken one's: only a whole new transfer, not
        # rsync's quick check against the broken copy, brings the right bytes.
        far.write_bytes(original)
        os.utime(far, ns=(times.st_atime_ns, times.st_mtime_ns))
        yield caller.call("/daq/RetryMergeDaq", "REM.9")
        final = yield caller.wait_for("REM.9", "Completed")
        with fits.open(final["result"], checksum=True) as hdus:
            self.assertEqual(hdus[0].verify_checksum(), 1)
            self.assertEqual([h.name for h in hdus[1:]], ["SCI"])
        internal = yield caller.call("/daq/GetInternalDaqStatus", "REM.9")
        [entry] = internal["detail"]["sources"]
        self.assertEqual((entry["bytes"], entry["collections"]), (len(original), 2))

    @inlineCallbacks
    def test_suspicious_timestamp_warning(self) -> None:
        caller = yield self.start()
        future = write_fits(str(self.far / "future.fits"), [("INSTRUME", "X")])
        later = time.time() + 3600
        os.utime(future, (later, later))
        yield caller.call("/daq/QueueDaq", spec_with("REM.3", ("dcs", remote(Path(future)))))
        final = yield caller.wait_for("REM.3", "Completed")
        [alert] = final["alerts"]
        self.assertEqual((alert["category"], alert["key"], alert["severity"]),
                         ("SuspiciousSourceFileTimestamp", "dcs", "Warning"))  # fmt: skip
        self.assertFalse(final["error"])

    @inlineCallbacks
    def test_remote_release_appears_whole_under_the_final_name(self) -> None:
        caller = yield self.start(**{"transfer.rsync_options": ["--bwlimit=8m"]})
        inbox = self.far / "olas"
        inbox.mkdir()
        source = write_raw_source(str(self.root / "local.fits"), 12 << 20, extensions=1)
        receivers = [{"type": "olasReceiver", "host": HOST_ALIAS, "path": str(inbox)}]
        spec = spec_with("REM.4", ("dcs", source), receivers=receivers)
        yield caller.call("/daq/QueueDaq", json.dumps(spec))
        yield caller.wait_for("REM.4", "Releasing")
        final = inbox / "REM.4.fits"
        seen_partial = False
        sizes = set()
        while caller.statuses("REM.4")[-1]["substate"] != "Completed":
            if final.exists():
                sizes.add(final.stat().st_size)
            seen_partial |= any(inbox.glob(".*dpmd-part"))
            yield deferLater(reactor, 0.05, lambda: None)
        product_size = final.stat().st_size
        self.assertTrue(seen_partial, "the transfer should have been seen in progress")
        self.assertLessEqual(sizes, {product_size})
        self.assertEqual(sorted(p.name for p in inbox.iterdir()), ["REM.4.fits", "REM.4.fits.json"])
        last = caller.statuses("REM.4")[-1]
        self.assertEqual(last["result"], f"{HOST_ALIAS}:{final}")
        with fits.open(final, checksum=True) as hdus:
            self.assertEqual(hdus[0].verify_checksum(), 1)
            self.assertEqual(hdus[0].header["ARCFILE"], "REM.4.fits")

    @inlineCallbacks
    def test_hostile_location_is_a_daq_exception(self) -> None:
        caller = yield self.start()
        spec = spec_with("REM.5", ("evil", "-oProxyCommand=sh:/x.fits"))
        with self.assertRaises(RpcError) as refused:
            yield caller.call("/daq/QueueDaq", json.dumps(spec))
        self.assertEqual(refused.exception.code, -32000)
        self.assertIn("source 'evil'", refused.exception.data["message"])


class ResumeTests(ChildServerTestCase):
    """A transfer cut by a server crash resumes from its partial file after the restart."""

    def setUp(self) -> None:
        super().setUp()
        self.sshd = SshServer(self.root / "ssh").start()
        self.addCleanup(self.sshd.stop)
        self.config.write_text(yaml.safe_dump({
            "listen": ["tcp:0:interface=127.0.0.1"],
            "transfer": {"ssh_options": self.sshd.ssh_options, "retries": 0,
                         "rsync_options": ["--bwlimit=10m"]},
        }))  # fmt: skip

    def test_killed_transfer_resumes_after_restart(self) -> None:
        far = self.root / "far"
        far.mkdir()
        big = write_raw_source(str(far / "big.fits"), 24 << 20, extensions=1)
        process, port = self.start()
        spec = spec_with("RES.1", ("big", remote(Path(big))))
        [reply] = self.rpc(port, ("/daq/QueueDaq", [json.dumps(spec)]))
        self.assertEqual(reply["id"], "RES.1")
        partial = self.root / "dpm" / "daqs" / "RES.1" / "sources" / ".big.fits.dpmd-part"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # rsync writes to a temporary of its own meanwhile
            in_flight = list(partial.parent.glob(".*big.fits.dpmd-part.*"))
            if in_flight and in_flight[0].stat().st_size > (4 << 20):
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        # rsync, told by the kernel (SIGTERM as its parent died), saves its partial file and ends.
        block_until(lambda: partial.exists() and not transferring(partial),
                    "rsync to keep its partial file and end", 60)  # fmt: skip
        kept = partial.stat().st_size
        self.assertGreater(kept, 0)
        self.assertLess(kept, os.path.getsize(big))
        process, port = self.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            [internal] = self.rpc(port, ("/daq/GetInternalDaqStatus", ["RES.1"]))
            if internal["status"]["substate"] == "Completed":
                break
            time.sleep(0.2)
        self.assertEqual(internal["status"]["substate"], "Completed", internal)
        with fits.open(internal["status"]["result"], checksum=True) as hdus:
            self.assertEqual(hdus[0].verify_checksum(), 1)
            with fits.open(big) as original:
                self.assertEqual(hdus["RAW0"].data.tobytes(), original["RAW0"].data.tobytes())
        self.rpc(port, ("/dpm/Exit", []))
        self.assertEqual(process.wait(timeout=60), 0)
