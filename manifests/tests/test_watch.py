"""Scale to zero: components/queue-watch keeps the base rules and adds `brokers:`/`watch:`, mounts
the Secret dwell-broker as files where the rules read them, leaves RBAC unchanged, watches the
queue the minReplicas-0 HPA selects, and the real aggregator binary accepts its rules file (it
starts, and reports the unreachable broker without showing the password)."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import yaml

import render

OVERLAY = "overlays/openssl-queue-watch-external-metrics"
WITHOUT_WATCH = "overlays/openssl-external-metrics"
EXAMPLE = "examples/binder/hpa-scale-to-zero"
DEADLINE_S = 30


def rules_of(r):
    cm = r.get("ConfigMap", "dwell-aggregator-rules", render.NAMESPACE)
    return yaml.safe_load(cm["data"]["rules.yaml"])


class QueueWatchTest(unittest.TestCase):
    def test_component_rules_are_the_base_rules_plus_the_watch(self):
        base = rules_of(render.render("base"))
        watched = rules_of(render.render(OVERLAY))
        self.assertEqual(set(watched) - set(base), {"brokers", "watch"})
        for key in base:
            self.assertEqual(watched[key], base[key], "%s differs from base/rules.yaml" % key)

    def test_the_secret_is_mounted_where_the_rules_read_it(self):
        r = render.render(OVERLAY)
        deploy = r.get("Deployment", render.SERVICE, render.NAMESPACE)
        pod = deploy["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == "aggregator"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        broker = rules_of(r)["brokers"]["main"]
        self.assertNotIn("url", broker, "a URL holds a password: never inline")
        for key in ("url_file", "ca_file", "management_ca_file"):
            with self.subTest(key=key):
                mount = mounts.get(os.path.dirname(broker[key]))
                self.assertIsNotNone(mount, "%s %s is under no mount" % (key, broker[key]))
                self.assertTrue(mount.get("readOnly"))
                self.assertNotIn("subPath", mount, "a subPath mount never sees a rotated Secret")
                self.assertEqual(volumes[mount["name"]]["secret"]["secretName"], "dwell-broker")
        self.assertTrue(broker["url_file"].endswith("/url"))

    def test_rbac_is_unchanged(self):
        def rbac(rel):
            kinds = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
            return sorted(
                (yaml.safe_dump(o, sort_keys=True) for o in render.render(rel).objects if o["kind"] in kinds)
            )
        self.assertEqual(rbac(OVERLAY), rbac(WITHOUT_WATCH))
        for o in render.render(OVERLAY).objects:
            for rule in o.get("rules", []) if o["kind"] in ("Role", "ClusterRole") else []:
                self.assertNotIn("secrets", rule.get("resources", []), "the kubelet mounts the Secret")

    def test_the_watch_serves_the_scale_to_zero_hpa(self):
        rules = rules_of(render.render(OVERLAY))
        app = render.render(EXAMPLE)
        (hpa,) = app.of_kind("HorizontalPodAutoscaler")
        self.assertEqual(hpa["spec"]["minReplicas"], 0)
        (metric,) = hpa["spec"]["metrics"]
        self.assertIn(metric["type"], ("External", "Object"), "minReplicas 0 needs Object or External")
        source = metric[metric["type"].lower()]
        by_name = {r["name"].lower(): r for r in rules["rules"]}
        rule = by_name[source["metric"]["name"].lower()]
        self.assertIn("idle_after", rule, "without idle_after the value never reaches 0")
        selector = source["metric"]["selector"]["matchLabels"]
        ns = hpa["metadata"]["namespace"]
        deploy = app.get("Deployment", hpa["spec"]["scaleTargetRef"]["name"], ns)
        pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
        watched = [
            e for e in rules["watch"]
            if e["namespace"] == ns and e["queue"] == selector.get("queue", e["queue"])
        ]
        self.assertTrue(watched, "no watch entry for the HPA's queue in namespace %s" % ns)
        for e in watched:
            for k, v in e.get("labels", {}).items():
                self.assertEqual(pod_labels.get(k), v, "watch labels are the consumer pods' labels")

    def test_the_real_aggregator_accepts_the_rules(self):
        tmp = tempfile.mkdtemp(prefix="dwell-watch-")
        self.addCleanup(shutil.rmtree, tmp, True)
        ca = os.path.join(render.workspace(), "overlays", "openssl", "certs", "ca.crt")
        password = "Watch-Test-s3cret"
        url_file = os.path.join(tmp, "url")
        with open(url_file, "w") as f:
            # Port 9 on loopback: nothing listens, so the watch reports a network failure.
            f.write("amqps://dwell-watch:%s@127.0.0.1:9/%%2f\n" % password)
        rules = rules_of(render.render(OVERLAY))
        broker = rules["brokers"]["main"]
        broker.update(url_file=url_file, ca_file=ca, management_ca_file=ca)
        path = os.path.join(tmp, "rules.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(rules, f)
        binary = os.path.join(render.BIN_DIR, "dwell-aggregator")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DWELL_")}
        log = open(os.path.join(tmp, "aggregator.log"), "w+")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [binary, "--config", path, "--metrics-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
             "--tls-self-signed-out", os.path.join(tmp, "self-signed.pem")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            log.seek(0)
            out = log.read()
            if "watch cannot connect to the broker" in out:
                break
            self.assertIsNone(proc.poll(), "the aggregator exited:\n%s" % out)
            self.assertLess(time.monotonic(), deadline, "no watch connection attempt:\n%s" % out)
            time.sleep(0.2)
        self.assertIn("rules loaded", out)
        self.assertNotIn("config rejected", out)
        self.assertIn("dwell-watch:***@127.0.0.1:9", out)
        self.assertNotIn(password, out)


if __name__ == "__main__":
    unittest.main()
