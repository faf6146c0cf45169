"""APIServices: each points at a Service port that exists and is named, is backed by a container
port, and is trusted through a real caBundle (openssl overlays) or cert-manager CA injection whose
certificate covers <service>.<namespace>.svc. Never insecureSkipTLSVerify."""

import base64
import os
import subprocess
import tempfile
import unittest

import render

CUSTOM = "custom.metrics.k8s.io"
EXTERNAL = "external.metrics.k8s.io"
INJECT = "cert-manager.io/inject-ca-from"


def target_port(service_port, pod_spec):
    """The container port a Service port's targetPort resolves to (name or number), or None."""
    tp = service_port.get("targetPort", service_port.get("port"))
    for c in pod_spec.get("containers", []):
        for p in c.get("ports", []) or []:
            if tp == p.get("name") or tp == p.get("containerPort"):
                return p
    return None


class APIServiceTest(unittest.TestCase):
    def test_every_installable_render_registers_custom_metrics(self):
        installable = render.installable()
        self.assertTrue(installable, "no render holds the aggregator Deployment")
        for r in installable:
            with self.subTest(kustomization=r.rel):
                names = {a["metadata"]["name"] for a in r.of_kind("APIService")}
                self.assertLessEqual(
                    {"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io"}, names
                )
                wants_external = r.rel.endswith("external-metrics")
                self.assertEqual(
                    "v1beta1.external.metrics.k8s.io" in names,
                    wants_external,
                    "the external APIService belongs only in the *-external-metrics overlays",
                )

    def test_apiservice_points_at_named_service_port(self):
        for rel, r in sorted(render.renders().items()):
            for api in r.of_kind("APIService"):
                spec = api["spec"]
                with self.subTest(kustomization=rel, apiservice=api["metadata"]["name"]):
                    self.assertEqual(
                        api["metadata"]["name"], "%s.%s" % (spec["version"], spec["group"])
                    )
                    self.assertIn(spec["group"], (CUSTOM, EXTERNAL))
                    ref = spec["service"]
                    svc = r.get("Service", ref["name"], ref["namespace"])
                    self.assertIsNotNone(svc, "Service %s/%s not in the render" % (ref["namespace"], ref["name"]))
                    self.assertNotEqual(svc["spec"].get("clusterIP"), "None", "APIService on a headless Service")
                    port = ref.get("port", 443)
                    matches = [p for p in svc["spec"]["ports"] if p["port"] == port]
                    self.assertEqual(len(matches), 1, "no Service port %d" % port)
                    self.assertTrue(matches[0].get("name"), "Service port %d has no name" % port)
                    # The availability check needs a ready endpoint whose port name matches: the
                    # Service's selector must pick the Deployment's pods and a real container port.
                    deploy = r.get("Deployment", ref["name"], ref["namespace"])
                    self.assertIsNotNone(deploy, "no Deployment behind Service %s" % ref["name"])
                    pod = deploy["spec"]["template"]
                    labels = pod["metadata"]["labels"]
                    for k, v in svc["spec"]["selector"].items():
                        self.assertEqual(labels.get(k), v, "Service selector misses the pods")
                    cport = target_port(matches[0], pod["spec"])
                    self.assertIsNotNone(cport, "targetPort %r is no container port" % matches[0].get("targetPort"))

    def test_versions_and_priorities(self):
        for rel, r in sorted(render.renders().items()):
            apis = {a["metadata"]["name"]: a["spec"] for a in r.of_kind("APIService")}
            for name, spec in apis.items():
                with self.subTest(kustomization=rel, apiservice=name):
                    self.assertNotIn("insecureSkipTLSVerify", spec)
                    self.assertTrue(1 <= spec["groupPriorityMinimum"] <= 20000)
                    self.assertTrue(1 <= spec["versionPriority"] <= 1000)
            if "v1beta2.custom.metrics.k8s.io" in apis:
                with self.subTest(kustomization=rel, check="v1beta2 preferred"):
                    self.assertGreater(
                        apis["v1beta2.custom.metrics.k8s.io"]["versionPriority"],
                        apis["v1beta1.custom.metrics.k8s.io"]["versionPriority"],
                    )

    def test_installable_renders_are_trusted(self):
        """Each installable APIService carries a real caBundle, or asks cert-manager for one."""
        for r in render.installable():
            for api in r.of_kind("APIService"):
                name = api["metadata"]["name"]
                annotations = api["metadata"].get("annotations", {}) or {}
                with self.subTest(kustomization=r.rel, apiservice=name):
                    if INJECT in annotations:
                        self.check_cert_manager(r, api, annotations[INJECT])
                    else:
                        self.check_ca_bundle(r, api)

    def check_ca_bundle(self, r, api):
        bundle = api["spec"].get("caBundle")
        self.assertTrue(bundle, "no caBundle and no cert-manager injection")
        pem = base64.b64decode(bundle, validate=True)
        self.assertIn(b"-----BEGIN CERTIFICATE-----", pem)
        ref = api["spec"]["service"]
        secret = self.tls_secret(r, ref)
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        cert = base64.b64decode(secret["data"]["tls.crt"])
        with tempfile.TemporaryDirectory() as tmp:
            ca_path, cert_path = os.path.join(tmp, "ca.crt"), os.path.join(tmp, "tls.crt")
            with open(ca_path, "wb") as f:
                f.write(pem)
            with open(cert_path, "wb") as f:
                f.write(cert)
            # What kube-apiserver does: verify the serving certificate against caBundle for the
            # name <service>.<namespace>.svc.
            proc = subprocess.run(
                [
                    "openssl", "verify", "-CAfile", ca_path, "-purpose", "sslserver",
                    "-verify_hostname", "%s.%s.svc" % (ref["name"], ref["namespace"]), cert_path,
                ],
                capture_output=True,
                text=True,
            )
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def check_cert_manager(self, r, api, inject_from):
        ns, _, cert_name = inject_from.partition("/")
        cert = r.get("Certificate", cert_name, ns)
        self.assertIsNotNone(cert, "%s names Certificate %s, not in the render" % (INJECT, inject_from))
        ref = api["spec"]["service"]
        self.assertEqual(ns, ref["namespace"])
        self.assertIn("%s.%s.svc" % (ref["name"], ref["namespace"]), cert["spec"].get("dnsNames", []))
        self.assertNotIn("caBundle", api["spec"], "cainjector owns caBundle here")
        deploy = r.get("Deployment", ref["name"], ref["namespace"])
        self.assertIn(cert["spec"]["secretName"], self.mounted_secrets(deploy))

    def tls_secret(self, r, ref):
        deploy = r.get("Deployment", ref["name"], ref["namespace"])
        names = self.serving_secrets(deploy)
        self.assertEqual(len(names), 1, "expected one serving Secret, got %s" % names)
        secret = r.get("Secret", names[0], ref["namespace"])
        self.assertIsNotNone(secret, "Secret %s is mounted but not in the render" % names[0])
        return secret

    @staticmethod
    def serving_secrets(deploy):
        """The Secrets mounted where DWELL_TLS_CERT points (others, e.g. the queue watch's broker
        Secret, are not the serving certificate)."""
        pod = deploy["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        names = []
        for c in pod.get("containers", []):
            cert = render.env_value(c, "DWELL_TLS_CERT")
            for m in c.get("volumeMounts", []):
                if cert and os.path.dirname(cert) == m["mountPath"] and "secret" in vols.get(m["name"], {}):
                    names.append(vols[m["name"]]["secret"]["secretName"])
        return names

    @staticmethod
    def mounted_secrets(deploy):
        vols = deploy["spec"]["template"]["spec"].get("volumes", [])
        return [v["secret"]["secretName"] for v in vols if "secret" in v]


class CertManagerResourcesTest(unittest.TestCase):
    """cert-manager objects have no schema in kubernetes-validate: check the fields that matter."""

    def test_certificates_chain_to_issuers_in_the_render(self):
        found = False
        for rel, r in sorted(render.renders().items()):
            issuers = {(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in r.of_kind("Issuer")}
            for cert in r.of_kind("Certificate"):
                found = True
                meta, spec = cert["metadata"], cert["spec"]
                with self.subTest(kustomization=rel, certificate=meta["name"]):
                    self.assertEqual(cert["apiVersion"], "cert-manager.io/v1")
                    self.assertTrue(spec.get("secretName"))
                    ref = spec["issuerRef"]
                    self.assertEqual(ref.get("kind", "Issuer"), "Issuer")
                    self.assertIn((meta["namespace"], ref["name"]), issuers)
                    issuer = issuers[(meta["namespace"], ref["name"])]["spec"]
                    self.assertEqual(len(issuer), 1, "an Issuer has exactly one type")
                    if "ca" in issuer:
                        ca_certs = [c for c in r.of_kind("Certificate") if c["spec"]["secretName"] == issuer["ca"]["secretName"]]
                        self.assertEqual(len(ca_certs), 1, "CA Issuer's Secret comes from no Certificate")
                        self.assertTrue(ca_certs[0]["spec"].get("isCA"))
                    if not spec.get("isCA"):
                        self.assertIn("server auth", spec.get("usages", []))
        self.assertTrue(found, "no cert-manager Certificate in any render")


if __name__ == "__main__":
    unittest.main()
