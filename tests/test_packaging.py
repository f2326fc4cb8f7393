"""What a ``pip install`` gets: the wheel's files and requirements, and no astropy at run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

from astropy.io import fits
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

import dpmd
from tests.test_client_support import start_server, tcp_endpoint

SOURCE_ROOT = Path(dpmd.__file__).parent.parent
SHIPPED = ["dpmd.service", "dpmd.yaml", "grafana-dpmd.json"]
"""Every file of etc/: the unit, the example configuration and the Grafana dashboard."""
WITHOUT_ASTROPY = "import sys; sys.modules.update(astropy=None, numpy=None); "
"""Makes ``import astropy`` and ``import numpy`` fail in the child that runs it."""


class WheelTests(SynchronousTestCase):
    def build_wheel(self) -> zipfile.ZipFile:
        """A wheel of a copy of this checkout (building writes into the tree it builds)."""
        try:
            import setuptools  # noqa: F401
            import wheel  # noqa: F401
        except ImportError as error:
            raise self.skipTest(f"building a wheel needs setuptools and wheel: {error}") from None
        tree = Path(self.mktemp()) / "tree"
        shutil.copytree(
            SOURCE_ROOT,
            tree,
            symlinks=True,
            ignore=shutil.ignore_patterns(".git", ".venv", "_trial_temp*", "build", "*.egg-info"),
        )
        out = tree.parent / "wheel"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--no-build-isolation", "--wheel-dir", str(out), str(tree)],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        [built] = out.glob("dpmd-*.whl")
        archive = zipfile.ZipFile(built)
        self.addCleanup(archive.close)
        return archive

    def test_the_wheel_ships_the_configuration_the_unit_and_the_dashboard(self) -> None:
        archive = self.build_wheel()
        for name in SHIPPED:
            self.assertEqual(
                archive.read(f"dpmd/etc/{name}"), (SOURCE_ROOT / "etc" / name).read_bytes()
            )
        names = archive.namelist()
        schema = SOURCE_ROOT / "dpmd" / "spec" / "schema" / "dpspec.schema.json"
        self.assertEqual(archive.read("dpmd/spec/schema/dpspec.schema.json"), schema.read_bytes())
        self.assertIn("twisted/plugins/dpmd_plugin.py", names)
        [metadata_name] = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        runtime = [
            requirement.split(">")[0].split("[")[0].strip().lower()
            for requirement in metadata.get_all("Requires-Dist", [])
            if "extra ==" not in requirement
        ]
        self.assertNotIn("astropy", runtime)
        self.assertIn("twisted", runtime)
        self.assertIn("rich", runtime)
        tests_only = [
            requirement
            for requirement in metadata.get_all("Requires-Dist", [])
            if 'extra == "test"' in requirement
        ]
        self.assertTrue([r for r in tests_only if r.startswith("astropy")])
        classifiers = metadata.get_all("Classifier", [])
        self.assertIn("Framework :: Twisted", classifiers)
        self.assertIn("Topic :: Scientific/Engineering :: Astronomy", classifiers)

    def test_the_installed_files_are_the_repository_files(self) -> None:
        installed = Path(dpmd.__file__).parent / "etc"
        self.assertEqual(sorted(path.name for path in (SOURCE_ROOT / "etc").iterdir()), SHIPPED)
        for name in SHIPPED:
            self.assertEqual(
                (installed / name).read_bytes(), (SOURCE_ROOT / "etc" / name).read_bytes()
            )


class WithoutAstropyTests(TestCase):
    @inlineCallbacks
    def test_dpmctl_demo_runs_without_astropy_or_numpy(self) -> Any:
        """The server's and the merger's modules import, and the demo runs, with neither."""
        service = start_server(self)
        directory = Path(self.mktemp()).absolute()
        out, err, status = yield getProcessOutputAndValue(
            sys.executable,
            ["-c", WITHOUT_ASTROPY + "import dpmd.tap, dpmd.server, dpmd.merge.__main__; "
             "from dpmd.client.cli import main; main()",
             "--connect", tcp_endpoint(service), "--json", "demo", "--dir", str(directory)],
            env={**os.environ, "PYTHONPATH": str(SOURCE_ROOT)},
            reactor=reactor,
        )  # fmt: skip
        self.assertEqual((status, err), (0, b""))
        result = json.loads(out)
        self.assertEqual([hdu["name"] for hdu in result["hdus"]][-1], "FCS_EVENTS")
        with fits.open(result["product"], checksum=True) as hdus:
            self.assertEqual(hdus[0].header["OBJECT"], "NGC 1365")
