"""The injected dwell-sidecar: a native sidecar (init container, restartPolicy Always), its env
names all accepted by the binary (`dwell-sidecar --help` lists `[env: DWELL_…]`), identity from the
Downward API, the aggregator address on the headless gRPC Service, and the app pointed at the
sidecar's report ports."""

import re
import unittest

import render

SIDECAR = "dwell-sidecar"
# Env a container may carry besides the binary's DWELL_* flags.
NON_FLAG_ENV = {"RUST_LOG"}


def injected():
    """(render, Deployment, pod spec, sidecar container) for every Deployment carrying it."""
    out = []
    for rel, r in sorted(render.renders().items()):
        for d in r.of_kind("Deployment"):
            pod = d["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) or []:
                if c["name"] == SIDECAR:
                    out.append((r, d, pod, c))
    if not out:
        raise AssertionError("no Deployment carries %s" % SIDECAR)
    return out


def effective(container, help_text, name):
    """A flag's value: the container's literal env, else the binary's default."""
    value = render.env_value(container, name)
    return value if value is not None else render.help_default(help_text, name)


class SidecarTest(unittest.TestCase):
    def test_env_names_are_accepted_by_the_binary(self):
        accepted, _ = render.help_env_names(SIDECAR)
        for r, d, _, c in injected():
            for e in c.get("env", []):
                with self.subTest(kustomization=r.rel, deployment=d["metadata"]["name"], env=e["name"]):
                    if e["name"] in NON_FLAG_ENV:
                        continue
                    self.assertIn(e["name"], accepted, "%s --help does not list %s" % (SIDECAR, e["name"]))
            for src in c.get("envFrom", []) or []:
                self.fail("envFrom hides env names from this check: %s" % src)
            names = [e["name"] for e in c.get("env", [])]
            self.assertEqual(len(names), len(set(names)), "duplicate env: %s" % names)

    def test_required_flags_are_set(self):
        # Flags the binary requires (no default) must be set in every injected pod: DWELL_QUEUE.
        _, help_text = render.help_env_names(SIDECAR)
        usage = re.search(r"^Usage:.*$", help_text, re.M).group(0)
        required = {"DWELL_" + f.upper().replace("-", "_") for f in re.findall(r"--([a-z0-9-]+) <", usage)}
        for r, d, _, c in injected():
            names = {e["name"] for e in c.get("env", [])}
            with self.subTest(kustomization=r.rel, deployment=d["metadata"]["name"]):
                self.assertLessEqual(required, names)

    def test_native_sidecar_shape(self):
        for r, d, pod, c in injected():
            with self.subTest(kustomization=r.rel, deployment=d["metadata"]["name"]):
                self.assertEqual(c.get("restartPolicy"), "Always", "not a native sidecar")
                self.assertNotIn(SIDECAR, [x["name"] for x in pod["containers"]])
                sc = c["securityContext"]
                self.assertIs(sc["runAsNonRoot"], True)
                self.assertIs(sc["readOnlyRootFilesystem"], True)
                self.assertIs(sc["allowPrivilegeEscalation"], False)
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                self.assertEqual(sc["seccompProfile"]["type"], "RuntimeDefault")
                self.assertIn("memory", c["resources"]["limits"])
                self.assertIn("cpu", c["resources"]["requests"])
                # The app starts only once the sidecar's listeners are up.
                self.assertIn("startupProbe", c)

    def test_identity_from_the_downward_api(self):
        for r, d, pod, c in injected():
            with self.subTest(kustomization=r.rel, deployment=d["metadata"]["name"]):
                refs = {
                    e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
                    for e in c["env"]
                    if "fieldRef" in e.get("valueFrom", {})
                }
                self.assertEqual(refs.get("DWELL_POD_NAME"), "metadata.name")
                self.assertEqual(refs.get("DWELL_POD_NAMESPACE"), "metadata.namespace")
                labels_file = render.env_value(c, "DWELL_LABELS_FILE")
                self.assertTrue(labels_file)
                mount_dir, filename = labels_file.rsplit("/", 1)
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                self.assertIn(mount_dir, mounts, "DWELL_LABELS_FILE is not under a mount")
                volume = next(v for v in pod["volumes"] if v["name"] == mounts[mount_dir])
                items = {i["path"]: i["fieldRef"]["fieldPath"] for i in volume["downwardAPI"]["items"]}
                self.assertEqual(items.get(filename), "metadata.labels")

    def test_bound_service_account_token_for_dwell(self):
        # The sidecar proves its pod to the aggregator with a projected token: audience dwell,
        # an hour's lifetime (the kubelet rotates it), read-only, and named by DWELL_TOKEN_FILE.
        for r, d, pod, c in injected():
            with self.subTest(kustomization=r.rel, deployment=d["metadata"]["name"]):
                token_file = render.env_value(c, "DWELL_TOKEN_FILE")
                self.assertTrue(token_file, "no DWELL_TOKEN_FILE")
                mount_dir, filename = token_file.rsplit("/", 1)
                mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
                self.assertIn(mount_dir, mounts, "DWELL_TOKEN_FILE is not under a mount")
                self.assertIs(mounts[mount_dir].get("readOnly"), True)
                volume = next(v for v in pod["volumes"] if v["name"] == mounts[mount_dir]["name"])
                sources = volume["projected"]["sources"]
                self.assertEqual(len(sources), 1)
                sa = sources[0]["serviceAccountToken"]
                self.assertEqual(sa, {"audience": "dwell", "expirationSeconds": 3600, "path": filename})

    def test_aggregator_address_is_the_headless_grpc_service(self):
        base = render.render("base")
        for r, d, _, c in injected():
            with self.subTest(kustomization=r.rel, deployment=d["metadata"]["name"]):
                url = render.env_value(c, "DWELL_AGGREGATOR")
                m = re.fullmatch(r"(https?)://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)", url or "")
                self.assertIsNotNone(m, "DWELL_AGGREGATOR %r is not a Service address" % url)
                _, name, ns, port = m.groups()
                svc = base.get("Service", name, ns)
                self.assertIsNotNone(svc, "no Service %s/%s in base" % (ns, name))
                self.assertEqual(svc["spec"].get("clusterIP"), "None", "sidecars must see every replica")
                ports = {p["port"]: p.get("name") for p in svc["spec"]["ports"]}
                self.assertEqual(ports.get(int(port)), "grpc")

    def test_app_reports_to_the_sidecar_ports(self):
        _, help_text = render.help_env_names(SIDECAR)
        checked = 0
        for r, d, pod, c in injected():
            for app in pod["containers"]:
                for name in ("DWELL_REPORT_UDP", "DWELL_REPORT_HTTP"):
                    target = render.env_value(app, name)
                    if target is None:
                        continue
                    checked += 1
                    with self.subTest(kustomization=r.rel, container=app["name"], env=name):
                        listen = effective(c, help_text, name)
                        self.assertNotEqual(listen, "off", "the app reports to a disabled listener")
                        self.assertEqual(render.port_of(target), render.port_of(listen))
                        self.assertRegex(target, r"^(http://)?(127\.0\.0\.1|localhost):")
        self.assertGreater(checked, 0, "no app is pointed at the sidecar's report ports")

    def test_probes_use_the_telemetry_port(self):
        _, help_text = render.help_env_names(SIDECAR)
        for r, d, _, c in injected():
            with self.subTest(kustomization=r.rel, deployment=d["metadata"]["name"]):
                port = render.port_of(effective(c, help_text, "DWELL_TELEMETRY_ADDR"))
                named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if probe in c:
                        p = c[probe]["httpGet"]["port"]
                        self.assertEqual(named.get(p, p), port, probe)
                        self.assertEqual(c[probe]["httpGet"]["path"], "/healthz")


if __name__ == "__main__":
    unittest.main()
