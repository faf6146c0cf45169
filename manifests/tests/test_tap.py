"""The AMQP tap component (components/sidecar-tap) and its example (examples/binder/tap): the tap
listens on the pod's loopback only, forwards to a broker URL without credentials, the app is
pointed at the tap and no longer at the report listeners, the startup probe gates the app, and
the real sidecar binary starts with exactly the rendered env (the tap bound before it reports
itself started)."""

import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

import render

SIDECAR = "dwell-sidecar"
TAP_EXAMPLE = os.path.join("examples", "binder", "tap")


def tapped():
    """(render, Deployment, pod spec, sidecar container) for every Deployment with the tap on."""
    out = []
    for rel, r in sorted(render.renders().items()):
        for d in r.of_kind("Deployment"):
            pod = d["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) or []:
                if c["name"] == SIDECAR and render.env_value(c, "DWELL_TAP_LISTEN") not in (None, "off"):
                    out.append((r, d, pod, c))
    return out


class TapManifestTest(unittest.TestCase):
    def test_the_component_is_used_by_the_example(self):
        used = render.components_used(render.workspace())
        self.assertIn(os.path.join("components", "sidecar-tap"), used)
        self.assertIn(TAP_EXAMPLE, [r.rel for r, _, _, _ in tapped()])

    def test_loopback_listener_and_a_broker_without_credentials(self):
        self.assertTrue(tapped(), "no Deployment has the tap on")
        for r, d, pod, c in tapped():
            with self.subTest(kustomization=r.rel, deployment=d["metadata"]["name"]):
                listen = render.env_value(c, "DWELL_TAP_LISTEN")
                self.assertRegex(listen, r"^127\.0\.0\.1:\d+$", "the tap must stay on the pod's loopback")
                upstream = render.env_value(c, "DWELL_TAP_UPSTREAM")
                self.assertRegex(upstream or "", r"^amqps?://[a-z0-9.-]+(:\d+)?$")
                self.assertNotIn("@", upstream, "credentials are the app's own, never the sidecar's")
                ports = [p["containerPort"] for p in c.get("ports", [])]
                self.assertNotIn(render.port_of(listen), ports, "the tap port must not be exposed")
                self.assertIn("startupProbe", c, "the app must not start before the tap is bound")
                probe = c["startupProbe"]["httpGet"]
                self.assertEqual(probe["path"], "/healthz")

    def test_the_app_points_at_the_tap_not_at_the_report_listeners(self):
        for r, d, pod, c in tapped():
            if r.rel != TAP_EXAMPLE:
                continue
            app = next(x for x in pod["containers"] if x["name"] == "binder")
            names = {e["name"]: e for e in app.get("env", [])}
            for report in ("DWELL_REPORT_UDP", "DWELL_REPORT_HTTP"):
                self.assertNotIn(report, names, "with the tap the app makes no report call")
            url = names["AMQP_URL"]["valueFrom"]["secretKeyRef"]
            self.assertEqual(url["key"], "app-url-tap")
            # The documented Secret value points at the tap's address.
            with open(os.path.join(render.MANIFESTS, TAP_EXAMPLE, "kustomization.yaml")) as f:
                doc = f.read()
            listen = render.env_value(c, "DWELL_TAP_LISTEN")
            self.assertRegex(doc, r"app-url-tap='amqp://[^@']+@%s/" % re.escape(listen))

    def test_the_binary_starts_with_the_rendered_env(self):
        names, _ = render.help_env_names(SIDECAR)
        for r, d, pod, c in tapped():
            with self.subTest(kustomization=r.rel):
                env = {"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1", "RUST_LOG": "info"}
                for e in c.get("env", []):
                    if "value" in e and e["name"] != "DWELL_LABELS_FILE":
                        env[e["name"]] = e["value"]
                # The kubelet's projected token is not here: a file standing in for it (the
                # sidecar refuses to start when --token-file is unreadable).
                self.assertIn("DWELL_TOKEN_FILE", env, "the tap sidecar gets the bound token")
                token = tempfile.NamedTemporaryFile("w", prefix="dwell-token-", delete=False)
                self.addCleanup(os.unlink, token.name)
                token.write("a-stand-in-token")
                token.close()
                env["DWELL_TOKEN_FILE"] = token.name
                # Free ports on this machine; the broker and aggregator names need not resolve.
                env.update(DWELL_TAP_LISTEN="127.0.0.1:0", DWELL_TELEMETRY_ADDR="127.0.0.1:0",
                           DWELL_REPORT_UDP="127.0.0.1:0", DWELL_REPORT_HTTP="127.0.0.1:0",
                           DWELL_POD_NAME="tap-check", DWELL_POD_NAMESPACE="binder",
                           DWELL_LOG_FORMAT="text")
                self.assertLessEqual(set(k for k in env if k.startswith("DWELL_")), names)
                binary = os.path.join(render.BIN_DIR, SIDECAR)
                proc = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
                try:
                    started = None
                    deadline = time.time() + 20
                    while time.time() < deadline and started is None:
                        line = proc.stdout.readline()
                        if not line:
                            break
                        if "dwell-sidecar started" in line:
                            started = line
                    self.assertIsNotNone(started, "the sidecar did not start with the rendered env")
                    self.assertRegex(started, r"tap=Some\(127\.0\.0\.1:\d+\)")
                    self.assertIn("amqp://rabbitmq.rabbitmq.svc:5672", started)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    proc.stdout.close()


if __name__ == "__main__":
    unittest.main()
