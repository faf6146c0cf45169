"""Who may talk to the aggregator, as shipped: the base reads the front-proxy CA (optional
ConfigMap copied from kube-system/extension-apiserver-authentication) and its allowed names; the
opt-in components grpc-mtls (aggregator) and sidecar-mtls (consumers) carry gRPC TLS flags the
binaries accept, with every file inside the Secret volume that holds it."""

import os
import unittest

import render

AGGREGATOR = "dwell-aggregator"
SIDECAR = "dwell-sidecar"


def aggregator_container(r):
    deploy = r.get("Deployment", render.SERVICE, render.NAMESPACE)
    pod = deploy["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "aggregator")


def sidecar_container(r, name, namespace):
    pod = r.get("Deployment", name, namespace)["spec"]["template"]["spec"]
    return pod, next(c for c in pod["initContainers"] if c["name"] == SIDECAR)


def volume_for(pod, container, path):
    """The volume whose (whole-directory) mount holds `path`."""
    directory = os.path.dirname(path)
    mount = next((m for m in container.get("volumeMounts", []) if m["mountPath"] == directory), None)
    if mount is None:
        raise AssertionError("%s is not under a mount of %s" % (path, container["name"]))
    if "subPath" in mount or mount.get("readOnly") is not True:
        raise AssertionError("mount %s must be a read-only directory mount" % directory)
    return next(v for v in pod["volumes"] if v["name"] == mount["name"])


class MtlsManifestTest(unittest.TestCase):
    def test_base_reads_the_front_proxy_ca_from_an_optional_configmap(self):
        pod, c = aggregator_container(render.render("base"))
        path = render.env_value(c, "DWELL_REQUESTHEADER_CLIENT_CA")
        self.assertTrue(path)
        volume = volume_for(pod, c, path)
        self.assertEqual(volume["configMap"]["name"], "dwell-front-proxy")
        self.assertIs(volume["configMap"].get("optional"), True)
        # The key name is the one in extension-apiserver-authentication, so the copy is verbatim.
        self.assertEqual(os.path.basename(path), "requestheader-client-ca-file")
        names = next(e for e in c["env"] if e["name"] == "DWELL_REQUESTHEADER_ALLOWED_NAMES")
        ref = names["valueFrom"]["configMapKeyRef"]
        self.assertEqual((ref["name"], ref["key"], ref.get("optional")),
                         ("dwell-front-proxy", "requestheader-allowed-names", True))
        accepted, _ = render.help_env_names(AGGREGATOR)
        for env in ("DWELL_REQUESTHEADER_CLIENT_CA", "DWELL_REQUESTHEADER_ALLOWED_NAMES", "DWELL_CLIENT_CA"):
            self.assertIn(env, accepted)

    def test_grpc_mtls_component_points_into_its_secret(self):
        r = render.render(os.path.join("examples", "grpc-mtls"))
        pod, c = aggregator_container(r)
        accepted, _ = render.help_env_names(AGGREGATOR)
        for env, key in (("DWELL_GRPC_TLS_CERT", "tls.crt"), ("DWELL_GRPC_TLS_KEY", "tls.key"),
                         ("DWELL_GRPC_CLIENT_CA", "ca.crt")):
            with self.subTest(env=env):
                self.assertIn(env, accepted)
                path = render.env_value(c, env)
                self.assertEqual(os.path.basename(path), key)
                self.assertEqual(volume_for(pod, c, path)["secret"]["secretName"], "dwell-aggregator-grpc-tls")
        # The metrics API's own Secret is still the one the APIService trusts.
        self.assertEqual(render.env_value(c, "DWELL_TLS_CERT"), "/etc/dwell/tls/tls.crt")

    def test_sidecar_mtls_component_pushes_https_with_a_client_certificate(self):
        r = render.render(os.path.join("examples", "binder", "mtls"))
        pod, c = sidecar_container(r, "binder", "binder")
        accepted, _ = render.help_env_names(SIDECAR)
        self.assertTrue(render.env_value(c, "DWELL_AGGREGATOR").startswith("https://dwell-aggregator-grpc."))
        for env, key in (("DWELL_AGGREGATOR_CA", "ca.crt"), ("DWELL_CLIENT_CERT", "tls.crt"),
                         ("DWELL_CLIENT_KEY", "tls.key")):
            with self.subTest(env=env):
                self.assertIn(env, accepted)
                path = render.env_value(c, env)
                self.assertEqual(os.path.basename(path), key)
                self.assertEqual(volume_for(pod, c, path)["secret"]["secretName"], "dwell-sidecar-grpc-tls")
        # Without the component the sidecar stays plaintext and needs no Secret.
        _, plain = sidecar_container(render.render(os.path.join("examples", "binder", "app")), "binder", "binder")
        self.assertTrue(render.env_value(plain, "DWELL_AGGREGATOR").startswith("http://"))
        self.assertIsNone(render.env_value(plain, "DWELL_CLIENT_CERT"))


if __name__ == "__main__":
    unittest.main()
