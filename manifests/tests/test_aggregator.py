"""The aggregator's Deployment, Services and PodDisruptionBudget: two hardened replicas, HTTPS probes
on /readyz and /livez, env the binary accepts, mounts that match the paths it is given, the
metrics Service 443 -> https and the headless gRPC Service, and a PDB that keeps one serving."""

import os
import unittest

import render

AGGREGATOR = "dwell-aggregator"


def parts(r):
    deploy = r.get("Deployment", render.SERVICE, render.NAMESPACE)
    if deploy is None:
        raise AssertionError("%s has no Deployment %s" % (r.rel, render.SERVICE))
    pod = deploy["spec"]["template"]
    return deploy, pod, pod["spec"]["containers"][0]


def renders_with_aggregator():
    return [render.render("base")] + render.installable()


class AggregatorTest(unittest.TestCase):
    def test_replicas_and_rollout(self):
        for r in renders_with_aggregator():
            deploy, _, _ = parts(r)
            with self.subTest(kustomization=r.rel):
                self.assertEqual(deploy["spec"]["replicas"], 2)
                rolling = deploy["spec"]["strategy"]["rollingUpdate"]
                self.assertEqual(rolling["maxUnavailable"], 0, "a rollout must not drop to one replica first")

    def test_hardening(self):
        for r in renders_with_aggregator():
            _, pod, c = parts(r)
            with self.subTest(kustomization=r.rel):
                psc, sc = pod["spec"]["securityContext"], c["securityContext"]
                self.assertIs(psc["runAsNonRoot"], True)
                self.assertNotEqual(psc.get("runAsUser", 0), 0)
                self.assertEqual(psc["seccompProfile"]["type"], "RuntimeDefault")
                self.assertIs(sc["readOnlyRootFilesystem"], True)
                self.assertIs(sc["allowPrivilegeEscalation"], False)
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                self.assertNotIn("add", sc["capabilities"])
                self.assertFalse(pod["spec"].get("hostNetwork", False))
                res = c["resources"]
                self.assertIn("memory", res["limits"])
                self.assertLessEqual({"cpu", "memory"}, set(res["requests"]))

    def test_probes_are_https_on_the_metrics_port(self):
        for r in renders_with_aggregator():
            _, _, c = parts(r)
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            with self.subTest(kustomization=r.rel):
                self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
                self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/livez")
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if probe not in c:
                        continue
                    get = c[probe]["httpGet"]
                    self.assertEqual(get["scheme"], "HTTPS", probe)
                    self.assertEqual(ports.get(get["port"], get["port"]), 6443, probe)
                listen = render.env_value(c, "DWELL_METRICS_ADDR")
                self.assertEqual(render.port_of(listen), ports["https"])
                self.assertEqual(render.port_of(render.env_value(c, "DWELL_GRPC_ADDR")), ports["grpc"])

    def test_env_names_are_accepted_by_the_binary(self):
        accepted, _ = render.help_env_names(AGGREGATOR)
        for r in renders_with_aggregator():
            _, _, c = parts(r)
            for e in c["env"]:
                if e["name"] == "RUST_LOG":
                    continue
                with self.subTest(kustomization=r.rel, env=e["name"]):
                    self.assertIn(e["name"], accepted)
            for arg in c.get("args", []) or []:
                if arg.startswith("--"):
                    flag = arg[2:].split("=", 1)[0]
                    with self.subTest(kustomization=r.rel, arg=arg):
                        self.assertIn("DWELL_" + flag.upper().replace("-", "_"), accepted)

    def test_file_flags_point_into_their_volumes(self):
        for r in renders_with_aggregator():
            _, pod, c = parts(r)
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            for env, kind in (("DWELL_TLS_CERT", "secret"), ("DWELL_TLS_KEY", "secret"), ("DWELL_CONFIG", "configMap")):
                path = render.env_value(c, env)
                with self.subTest(kustomization=r.rel, env=env):
                    self.assertTrue(path)
                    directory, key = os.path.split(path)
                    self.assertIn(directory, mounts, "%s is not under a mount" % path)
                    mount = mounts[directory]
                    # A subPath mount never sees updates: rotation and reload need the directory.
                    self.assertNotIn("subPath", mount)
                    self.assertIs(mount.get("readOnly"), True)
                    self.assertIn(kind, volumes[mount["name"]])
                    if kind == "configMap":
                        cm = r.get("ConfigMap", volumes[mount["name"]]["configMap"]["name"], render.NAMESPACE)
                        self.assertIsNotNone(cm)
                        self.assertIn(key, cm["data"])
                    else:
                        # openssl overlays carry the Secret (cert-manager creates it in-cluster
                        # with the same keys: tls.crt, tls.key, ca.crt).
                        secret = r.get("Secret", volumes[mount["name"]]["secret"]["secretName"], render.NAMESPACE)
                        if secret is not None:
                            self.assertIn(key, secret["data"])
                        else:
                            self.assertIn(key, ("tls.crt", "tls.key"))

    def test_services(self):
        for r in renders_with_aggregator():
            _, pod, c = parts(r)
            cports = {p["name"]: p["containerPort"] for p in c["ports"]}
            labels = pod["metadata"]["labels"]
            with self.subTest(kustomization=r.rel):
                services = [s for s in r.of_kind("Service") if s["metadata"]["namespace"] == render.NAMESPACE]
                by_port = {}
                for s in services:
                    for k, v in s["spec"]["selector"].items():
                        self.assertEqual(labels.get(k), v, "Service %s selects no aggregator pod" % s["metadata"]["name"])
                    for p in s["spec"]["ports"]:
                        self.assertTrue(p.get("name"), "unnamed port on %s" % s["metadata"]["name"])
                        self.assertIn(p["targetPort"], cports, "targetPort must name a container port")
                        by_port[(p["name"], p["port"])] = s
                https = by_port.get(("https", 443))
                self.assertIsNotNone(https, "no Service port https:443")
                self.assertEqual(cports["https"], 6443)
                self.assertNotEqual(https["spec"].get("clusterIP"), "None")
                grpc = by_port.get(("grpc", 50051))
                self.assertIsNotNone(grpc, "no Service port grpc:50051")
                self.assertEqual(grpc["spec"].get("clusterIP"), "None", "the gRPC Service must be headless")
                self.assertEqual(cports["grpc"], 50051)

    def test_pdb_keeps_one_replica(self):
        for r in renders_with_aggregator():
            deploy, pod, _ = parts(r)
            with self.subTest(kustomization=r.rel):
                pdbs = [p for p in r.of_kind("PodDisruptionBudget") if p["metadata"]["namespace"] == render.NAMESPACE]
                self.assertEqual(len(pdbs), 1)
                pdb = pdbs[0]
                self.assertEqual(pdb["apiVersion"], "policy/v1")
                for k, v in pdb["spec"]["selector"]["matchLabels"].items():
                    self.assertEqual(pod["metadata"]["labels"].get(k), v)
                self.assertGreaterEqual(pdb["spec"]["minAvailable"], 1)
                self.assertLess(pdb["spec"]["minAvailable"], deploy["spec"]["replicas"], "drains would block")


if __name__ == "__main__":
    unittest.main()
