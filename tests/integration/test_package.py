"""The .deb (issue 23 point 10): build it with CPack from this build tree, unpack it with
dpkg-deb -x, verify the installed systemd units and run the packaged binaries."""
import glob
import os
import shutil
import subprocess
import unittest

from harness import BUILD, TempTestCase, clean_env

UNITS = ("chsync.service", "chsync.timer", "chsync-worker@.service")


@unittest.skipUnless(shutil.which("cpack") and shutil.which("dpkg-deb"), "cpack/dpkg-deb missing")
class PackageTest(TempTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pkgdir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"chsync-pkg-{os.getpid()}")
        shutil.rmtree(cls.pkgdir, ignore_errors=True)
        p = subprocess.run(["cpack", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B",
                            cls.pkgdir], capture_output=True, timeout=900)
        if p.returncode != 0:
            raise AssertionError("cpack failed:\n" + p.stdout.decode() + p.stderr.decode())
        debs = glob.glob(os.path.join(cls.pkgdir, "*.deb"))
        assert len(debs) == 1, debs
        cls.deb = debs[0]
        cls.root = os.path.join(cls.pkgdir, "root")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True, timeout=120)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pkgdir, ignore_errors=True)

    def test_units_and_binaries_are_installed(self):
        for u in UNITS:
            self.assertTrue(os.path.isfile(os.path.join(self.root, "usr/lib/systemd/system", u)), u)
        for b in ("chsync", "chsync-gen"):
            self.assertTrue(os.access(os.path.join(self.root, "usr/bin", b), os.X_OK), b)
        with open(os.path.join(self.root, "usr/lib/systemd/system/chsync.service")) as f:
            service = f.read()
        # Optional path: absent node-exporter must not fail the unit under ProtectSystem=strict.
        self.assertIn("ReadWritePaths=/var/lib/chsync -/var/lib/prometheus/node-exporter", service)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze missing")
    def test_systemd_analyze_verify(self):
        units = [os.path.join(self.root, "usr/lib/systemd/system", u) for u in UNITS]
        # --root: ExecStart=/usr/bin/chsync is looked up inside the unpacked package. The
        # worker template is verified as an instance.
        inst = os.path.join(self.tmp, "chsync-worker@1.service")
        shutil.copy(units[2], inst)
        p = subprocess.run(["systemd-analyze", "verify", f"--root={self.root}", units[0], units[1], inst],
                           capture_output=True, timeout=120, env=clean_env(SYSTEMD_LOG_LEVEL="warning"))
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 0, err)
        self.assertNotIn("chsync", err, err)  # no complaint about our units

    def test_packaged_binaries_run(self):
        chsync = os.path.join(self.root, "usr/bin/chsync")
        p = subprocess.run([chsync, "version"], capture_output=True, timeout=60, env=clean_env())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"chsync", p.stdout)
        # bench --generate finds the packaged chsync-gen next to the packaged chsync.
        p = subprocess.run([chsync, "bench", "--self", "--generate", "300K", "-q"], capture_output=True,
                           timeout=300, env=clean_env())
        self.assertEqual(p.returncode, 0, p.stderr.decode())


if __name__ == "__main__":
    unittest.main()
