"""The shipped configuration against the real aggregator binary, with real clients: it runs
target/debug/dwell-aggregator with the rendered Deployment's environment, the certificate from
gen-certs.sh and the ConfigMap's rules file; kubectl verifies TLS exactly as kube-apiserver does
(caBundle, SNI <service>.<namespace>.svc); grpcurl pushes one report as a binder sidecar would;
then every shipped HPA's request, built from the HPA object, must answer with that value.
The shipped env requires authenticated callers: the front-proxy CA and a client CA are test CAs
made here with openssl, kubectl presents a certificate from the client CA (kubectl cannot send the
front proxy's X-Remote-User), and a caller without one gets 401."""

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse

import render

DEADLINE_S = 30
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
AGE_S = 45


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hpa_request(hpa, deployment):
    """The metrics API path the HPA controller sends for the HPA's single metric (contract §1)."""
    ns = hpa["metadata"]["namespace"]
    (metric,) = hpa["spec"]["metrics"]
    source = metric[metric["type"].lower()]
    name = source["metric"]["name"]
    selector = source["metric"].get("selector", {}).get("matchLabels", {})
    sel = ",".join("%s=%s" % kv for kv in sorted(selector.items()))
    if metric["type"] == "External":
        path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/%s/%s" % (ns, name.lower())
        query = {"labelSelector": sel} if sel else {}
    elif metric["type"] == "Pods":
        path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/%s/pods/%%2A/%s" % (ns, name)
        labels = deployment["spec"]["selector"]["matchLabels"]
        query = {"labelSelector": ",".join("%s=%s" % kv for kv in sorted(labels.items()))}
        if sel:
            query["metricLabelSelector"] = sel
    else:
        ref = source["describedObject"]
        group = ref["apiVersion"].split("/")[0] if "/" in ref["apiVersion"] else ""
        resource = {"Service": "services", "Deployment": "deployments", "Pod": "pods"}[ref["kind"]]
        resource += "." + group if group else ""
        path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/%s/%s/%s/%s" % (ns, resource, ref["name"], name)
        query = {"metricLabelSelector": sel} if sel else {}
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def make_ca(directory, name):
    """A throwaway CA (openssl): returns the paths of its certificate and key."""
    crt, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    render.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=" + name, "-days", "1", "-keyout", key, "-out", crt])
    return crt, key


def make_client_cert(directory, ca, cn):
    """A client certificate (clientAuth) for CN `cn` signed by `ca`: returns (cert, key) paths."""
    crt, key, csr = (os.path.join(directory, cn + ext) for ext in (".crt", ".key", ".csr"))
    ext = os.path.join(directory, cn + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    render.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", "/CN=" + cn, "-keyout", key, "-out", csr])
    render.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                "-days", "1", "-extfile", ext, "-out", crt])
    return crt, key


class LiveAggregatorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dwell-live-")
        cls.proc = None
        certs = os.path.join(cls.tmp, "certs")
        render.run([os.path.join(render.MANIFESTS, "scripts", "gen-certs.sh"), "--out", certs])
        base = render.render("base")
        deploy = base.get("Deployment", render.SERVICE, render.NAMESPACE)
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        config = render.env_value(container, "DWELL_CONFIG")
        cm = base.get("ConfigMap", "dwell-aggregator-rules", render.NAMESPACE)
        rules = os.path.join(cls.tmp, os.path.basename(config))
        with open(rules, "w") as f:
            f.write(cm["data"][os.path.basename(config)])
        policy_path = render.env_value(container, "DWELL_AUTHORIZATION_POLICY")
        policy_cm = base.get("ConfigMap", "dwell-aggregator-authz", render.NAMESPACE)
        policy = os.path.join(cls.tmp, os.path.basename(policy_path))
        with open(policy, "w") as f:
            f.write(policy_cm["data"][os.path.basename(policy_path)])
        front_proxy_ca = make_ca(cls.tmp, "front-proxy-ca")
        client_ca = make_ca(cls.tmp, "client-ca")
        # The HPA's identity: the shipped authorization policy allows it.
        probe_cert, probe_key = make_client_cert(cls.tmp, client_ca, HPA_USER)
        cls.metrics_port, cls.grpc_port = free_port(), free_port()
        # The manifest's environment, with the in-pod paths and addresses moved to this machine.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DWELL_")}
        for e in container["env"]:
            if "value" in e:
                env[e["name"]] = e["value"]
        env.update(
            DWELL_METRICS_ADDR="127.0.0.1:%d" % cls.metrics_port,
            DWELL_GRPC_ADDR="127.0.0.1:%d" % cls.grpc_port,
            DWELL_TLS_CERT=os.path.join(certs, "tls.crt"),
            DWELL_TLS_KEY=os.path.join(certs, "tls.key"),
            DWELL_CONFIG=rules,
            DWELL_REQUESTHEADER_CLIENT_CA=front_proxy_ca[0],
            DWELL_CLIENT_CA=client_ca[0],
            DWELL_AUTHORIZATION_POLICY=policy,
        )
        binary = os.path.join(render.BIN_DIR, "dwell-aggregator")
        cls.log = open(os.path.join(cls.tmp, "aggregator.log"), "w+")
        cls.proc = subprocess.Popen([binary], env=env, stdout=cls.log, stderr=subprocess.STDOUT)
        service = "%s.%s.svc" % (render.SERVICE, render.NAMESPACE)
        users = {
            "kubeconfig": {"client-certificate": probe_cert, "client-key": probe_key},
            "kubeconfig-anonymous": {"token": "unused"},
        }
        for name, user in users.items():
            with open(os.path.join(cls.tmp, name), "w") as f:
                json.dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "clusters": [{"name": "dwell", "cluster": {
                            "server": "https://127.0.0.1:%d" % cls.metrics_port,
                            "certificate-authority": os.path.join(certs, "ca.crt"),
                            "tls-server-name": service,
                        }}],
                        "users": [{"name": "probe", "user": user}],
                        "contexts": [{"name": "dwell", "context": {"cluster": "dwell", "user": "probe"}}],
                        "current-context": "dwell",
                    },
                    f,
                )
        cls.kubeconfig = os.path.join(cls.tmp, "kubeconfig")
        cls.anonymous_kubeconfig = os.path.join(cls.tmp, "kubeconfig-anonymous")
        cls.wait_until(lambda: cls.raw("/readyz")[0] == 0, "the aggregator to become ready")

    @classmethod
    def tearDownClass(cls):
        if cls.proc is not None:
            cls.proc.terminate()
            try:
                cls.proc.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
            cls.log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def raw(cls, path):
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", cls.kubeconfig, "get", "--raw", path],
            capture_output=True, text=True,
        )
        return proc.returncode, proc.stdout, proc.stderr

    @classmethod
    def wait_until(cls, condition, what):
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if cls.proc.poll() is not None:
                cls.log.seek(0)
                raise AssertionError("the aggregator exited (%d):\n%s" % (cls.proc.returncode, cls.log.read()))
            if condition():
                return
            time.sleep(0.2)
        cls.log.seek(0)
        raise AssertionError("timed out waiting for %s; log:\n%s" % (what, cls.log.read()[-4000:]))

    def test_callers_without_a_certificate_are_refused_but_probes_pass(self):
        def raw(path):
            return subprocess.run(["kubectl", "--kubeconfig", self.anonymous_kubeconfig, "get", "--raw", path],
                                  capture_output=True, text=True)
        proc = raw("/apis/custom.metrics.k8s.io/v1beta2")
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertIn("Unauthorized", proc.stderr)
        for path in ("/healthz", "/livez", "/readyz"):
            proc = raw(path)
            self.assertEqual((proc.returncode, proc.stdout.strip()), (0, "ok"), proc.stderr)

    def test_discovery_lists_every_hpa_metric(self):
        rc, out, err = self.raw("/apis/custom.metrics.k8s.io/v1beta2")
        self.assertEqual(rc, 0, err)
        custom = {r["name"] for r in json.loads(out)["resources"]}
        rc, out, err = self.raw("/apis/external.metrics.k8s.io/v1beta1")
        self.assertEqual(rc, 0, err)
        external = {r["name"] for r in json.loads(out)["resources"]}
        for rel, r in sorted(render.renders().items()):
            for h in r.of_kind("HorizontalPodAutoscaler"):
                for m in h["spec"]["metrics"]:
                    source = m[m["type"].lower()]
                    name = source["metric"]["name"]
                    with self.subTest(kustomization=rel, type=m["type"], metric=name):
                        if m["type"] == "External":
                            self.assertIn(name.lower(), {n.lower() for n in external})
                        elif m["type"] == "Pods":
                            self.assertIn("pods/" + name, custom)
                        else:
                            ref = source["describedObject"]
                            resource = {"Service": "services", "Deployment": "deployments.apps"}[ref["kind"]]
                            self.assertIn("%s/%s" % (resource, name), custom)

    def test_every_hpa_gets_the_reported_dwell_time(self):
        # One report from a binder pod, as its injected sidecar would send it.
        app = render.render("examples/binder/app")
        deploy = app.get("Deployment", "binder", "binder")
        sidecar = next(c for c in deploy["spec"]["template"]["spec"]["initContainers"] if c["name"] == "dwell-sidecar")
        grpcurl = shutil.which("grpcurl")
        self.assertIsNotNone(grpcurl, "grpcurl is not installed (scripts/lib/services.sh ensure_tools)")
        source = {
            "namespace": "binder",
            "pod": "binder-7d4b9c-x2x9k",
            "labels": deploy["spec"]["template"]["metadata"]["labels"],
            "queue": render.env_value(sidecar, "DWELL_QUEUE"),
            "vhost": "/",
        }
        instance = str(random.getrandbits(63))

        def push(seq):
            # A fresh report before each request, so no source goes stale (stale_after) however
            # slowly the requests run.
            now_ms = int(time.time() * 1000)
            report = {
                "source": source,
                "instance": instance,
                "seq": str(seq),
                "intervalStartMs": str(now_ms - 1000),
                "intervalEndMs": str(now_ms),
                "samples": {"samples": [{"observedAtMs": str(now_ms), "ageMs": str(AGE_S * 1000)}] * 10},
            }
            render.run([grpcurl, "-plaintext", "-d", json.dumps(report), "127.0.0.1:%d" % self.grpc_port, "dwell.v1.Ingest/Push"])

        hpas = [(rel, h) for rel, r in sorted(render.renders().items()) for h in r.of_kind("HorizontalPodAutoscaler")]
        self.assertTrue(hpas)
        for seq, (rel, h) in enumerate(hpas, start=1):
            push(seq)
            ref = h["spec"]["scaleTargetRef"]
            target = render.render(rel).get("Deployment", ref["name"], h["metadata"]["namespace"])
            path = hpa_request(h, target)
            with self.subTest(kustomization=rel, request=path):
                result = {}

                def answered():
                    rc, out, err = self.raw(path)
                    result.update(rc=rc, out=out, err=err)
                    return rc == 0 and json.loads(out)["items"]

                self.wait_until(answered, path)
                items = json.loads(result["out"])["items"]
                self.assertEqual(len(items), 1, items)
                value = items[0]["value"]
                # p90 / max of ten 45 s ages, rounded up to whole seconds (histogram error <= 1%).
                self.assertIn(value, (str(AGE_S), str(AGE_S + 1)), items[0])
                if h["spec"]["metrics"][0]["type"] == "Pods":
                    self.assertEqual(items[0]["describedObject"]["name"], source["pod"])


if __name__ == "__main__":
    unittest.main()
