"""scripts/gen-certs.sh: the serving certificate's SANs cover <service>.<namespace>.svc, it chains
to the CA that lands in caBundle, the Secret holds exactly those files, and the CA survives renewal."""

import base64
import os
import re
import subprocess
import tempfile
import unittest

import yaml

import render

SCRIPT = os.path.join(render.MANIFESTS, "scripts", "gen-certs.sh")


def gen(out, *args):
    return render.run([SCRIPT, "--out", out, *args])


def sans(cert_path):
    text = render.run(["openssl", "x509", "-in", cert_path, "-noout", "-ext", "subjectAltName"]).stdout
    return set(re.findall(r"DNS:([^,\s]+)", text))


def read(path):
    with open(path, "rb") as f:
        return f.read()


class GenCertsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "certs")

    def tearDown(self):
        self.tmp.cleanup()

    def test_sans_cover_the_service_name_kube_apiserver_dials(self):
        gen(self.out)
        names = sans(os.path.join(self.out, "tls.crt"))
        # The Service and namespace the APIServices actually name, not the script's defaults.
        refs = {
            (a["spec"]["service"]["name"], a["spec"]["service"]["namespace"])
            for r in render.installable()
            for a in r.of_kind("APIService")
        }
        self.assertTrue(refs)
        for name, ns in refs:
            self.assertIn("%s.%s.svc" % (name, ns), names)
        purpose = render.run(["openssl", "x509", "-in", os.path.join(self.out, "tls.crt"), "-noout", "-purpose"]).stdout
        self.assertRegex(purpose, r"SSL server : Yes")
        self.assertRegex(purpose, r"SSL server CA : No")

    def test_custom_service_and_namespace(self):
        gen(self.out, "--service", "metrics", "--namespace", "monitoring")
        self.assertIn("metrics.monitoring.svc", sans(os.path.join(self.out, "tls.crt")))
        with open(os.path.join(self.out, "secret.yaml")) as f:
            secret = yaml.safe_load(f)
        self.assertEqual(secret["metadata"]["namespace"], "monitoring")

    def test_secret_and_patch_hold_the_generated_files(self):
        gen(self.out)
        with open(os.path.join(self.out, "secret.yaml")) as f:
            secret = yaml.safe_load(f)
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        for key in ("ca.crt", "tls.crt", "tls.key"):
            self.assertEqual(base64.b64decode(secret["data"][key]), read(os.path.join(self.out, key)))
        with open(os.path.join(self.out, "cabundle-patch.yaml")) as f:
            patch = yaml.safe_load(f)
        self.assertEqual(patch, [{"op": "add", "path": "/spec/caBundle", "value": secret["data"]["ca.crt"]}])
        render.run(["openssl", "verify", "-CAfile", os.path.join(self.out, "ca.crt"), os.path.join(self.out, "tls.crt")])
        # Private keys are not world-readable.
        for key in ("ca.key", "tls.key", "secret.yaml"):
            self.assertEqual(os.stat(os.path.join(self.out, key)).st_mode & 0o077, 0, key)

    def test_renewal_keeps_the_ca_unless_asked(self):
        gen(self.out)
        ca1, tls1 = read(os.path.join(self.out, "ca.crt")), read(os.path.join(self.out, "tls.crt"))
        gen(self.out)
        self.assertEqual(read(os.path.join(self.out, "ca.crt")), ca1, "renewal changed the CA (caBundle)")
        self.assertNotEqual(read(os.path.join(self.out, "tls.crt")), tls1)
        gen(self.out, "--new-ca")
        self.assertNotEqual(read(os.path.join(self.out, "ca.crt")), ca1)

    def test_default_output_is_git_ignored(self):
        # The default --out holds private keys: git must never pick them up.
        for name in ("tls.key", "ca.key", "secret.yaml"):
            path = os.path.join(render.MANIFESTS, "overlays", "openssl", "certs", name)
            proc = subprocess.run(["git", "-C", render.REPO, "check-ignore", "-q", path])
            self.assertEqual(proc.returncode, 0, "%s is not git-ignored" % path)

    def test_bad_arguments_fail_clearly(self):
        for args in (["--days", "0"], ["--days", "soon"], ["--bogus"]):
            with self.subTest(args=args):
                proc = subprocess.run([SCRIPT, "--out", self.out, *args], capture_output=True, text=True)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn("gen-certs.sh:", proc.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.out, "tls.crt")))


if __name__ == "__main__":
    unittest.main()
