"""HPAs: autoscaling/v2 only, each metric name matches a rule in the aggregator's shipped rules
(the ConfigMap mounted at --config), Object metrics describe a resource the rule serves, External
metrics name rules served as external, and each HPA scales a Deployment that carries the sidecar."""

import os
import re
import unittest

import yaml

import render

# Mirrors aggregator/src/policy/rule.rs: the built-in rule, and the resources a rule serves when
# it lists none (pods are always served).
BUILTIN_RULES = {"seconds": {"name": "seconds"}}
DEFAULT_RESOURCES = {"pods", "deployments.apps", "statefulsets.apps", "services"}

# describedObject (apiVersion, kind) -> the group-resource in the metrics API path.
RESOURCES = {
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Namespace"): "namespaces",
    ("apps/v1", "Deployment"): "deployments.apps",
    ("apps/v1", "StatefulSet"): "statefulsets.apps",
}


def shipped_rules():
    """Rule name (lower-case) -> rule, from the rules file the base's ConfigMap ships."""
    base = render.render("base")
    deploy = base.get("Deployment", render.SERVICE, render.NAMESPACE)
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config_path = render.env_value(container, "DWELL_CONFIG")
    if config_path is None:
        return BUILTIN_RULES
    mount_dir, key = os.path.split(config_path)
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    if mount_dir not in mounts:
        raise AssertionError("DWELL_CONFIG %s is not under a volume mount" % config_path)
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[mount_dir])
    cm = base.get("ConfigMap", volume["configMap"]["name"], render.NAMESPACE)
    if cm is None or key not in cm.get("data", {}):
        raise AssertionError("ConfigMap %s has no key %s" % (volume["configMap"]["name"], key))
    doc = yaml.safe_load(cm["data"][key]) or {}
    rules = doc.get("rules")
    if rules is None:
        return BUILTIN_RULES
    return {r["name"].lower(): r for r in rules}


def aggregator_fields():
    """Field names the aggregator's rules parser accepts (it denies unknown fields), read from
    aggregator/src/config.rs so that a renamed field there fails here, not at pod start-up."""
    path = os.path.join(render.REPO, "aggregator", "src", "config.rs")
    with open(path) as f:
        src = f.read()
    fields = {}
    for name in ("RawConfig", "RawRule", "RawSources"):
        m = re.search(r"struct %s \{(.*?)\n\}" % name, src, re.S)
        if m is None:
            raise AssertionError("struct %s not found in %s: update this test" % (name, path))
        fields[name] = set(re.findall(r"^\s+(?:pub\s+)?([a-z_][a-z0-9_]*):", m.group(1), re.M))
    return fields


def served_resources(rule):
    listed = rule.get("resources")
    return (set(listed) | {"pods"}) if listed is not None else set(DEFAULT_RESOURCES)


def hpas():
    """(render, HPA) for every HPA in every render, once per object name and file."""
    out = []
    for rel, r in sorted(render.renders().items()):
        for h in r.of_kind("HorizontalPodAutoscaler"):
            out.append((r, h))
    if not out:
        raise AssertionError("no HorizontalPodAutoscaler in any render")
    return out


class HPATest(unittest.TestCase):
    def test_rules_file_parses_and_names_are_unique(self):
        rules = shipped_rules()
        self.assertTrue(rules)
        base = render.render("base")
        cm = base.get("ConfigMap", "dwell-aggregator-rules", render.NAMESPACE)
        doc = yaml.safe_load(next(iter(cm["data"].values())))
        names = [r["name"].lower() for r in doc.get("rules", [])]
        self.assertEqual(len(names), len(set(names)), "rule names are unique ignoring case")

    def test_rules_file_uses_only_fields_the_aggregator_knows(self):
        fields = aggregator_fields()
        base = render.render("base")
        cm = base.get("ConfigMap", "dwell-aggregator-rules", render.NAMESPACE)
        doc = yaml.safe_load(next(iter(cm["data"].values())))
        self.assertLessEqual(set(doc), fields["RawConfig"])
        duration = r"^[0-9]+(ms|s|m|h|d)$"
        for key in ("stale_after", "evict_after"):
            if key in doc:
                self.assertRegex(doc[key], duration)
        for rule in doc.get("rules", []):
            with self.subTest(rule=rule.get("name")):
                self.assertLessEqual(set(rule), fields["RawRule"])
                self.assertLessEqual(set(rule.get("sources", {})), fields["RawSources"])
                self.assertRegex(rule["name"], r"^[A-Za-z0-9_.:-]{1,253}$")
                for key in ("window", "stall_after"):
                    if key in rule:
                        self.assertRegex(rule[key], duration if key == "window" else duration + "|^off$")
                checks = {
                    "statistic": r"^(max|min|mean|count|rate|last|p[0-9]+(\.[0-9]+)?)$",
                    "combine": r"^(max|mean|sum)$",
                    "unit": r"^(seconds|milliseconds)$",
                    "rounding": r"^(ceil|floor|round)$",
                }
                for key, pattern in checks.items():
                    if key in rule:
                        self.assertRegex(rule[key], pattern)
                if "on_missing" in rule:
                    om = rule["on_missing"]
                    self.assertTrue(om == "not_found" or (isinstance(om, dict) and set(om) == {"fallback"}), om)

    def test_the_three_metric_shapes_are_shipped(self):
        types = {m["type"] for _, h in hpas() for m in h["spec"]["metrics"]}
        self.assertEqual(types, {"Object", "Pods", "External"})

    def test_metric_names_match_shipped_rules(self):
        rules = shipped_rules()
        for r, h in hpas():
            for m in h["spec"]["metrics"]:
                source = m[m["type"].lower()]
                name = source["metric"]["name"]
                with self.subTest(kustomization=r.rel, hpa=h["metadata"]["name"], metric=name):
                    self.assertEqual(h["apiVersion"], "autoscaling/v2")
                    if m["type"] == "External":
                        # External names are matched case-insensitively; the rule must be served
                        # as external (the default).
                        rule = rules.get(name.lower())
                        self.assertIsNotNone(rule, "no rule %r in %s" % (name, sorted(rules)))
                        self.assertTrue(rule.get("external", True), "rule %s is not external" % name)
                    else:
                        self.assertIn(name, {r_["name"] for r_ in rules.values()}, "no rule named %r" % name)
                        rule = rules[name.lower()]
                    if m["type"] == "Object":
                        ref = source["describedObject"]
                        resource = RESOURCES.get((ref["apiVersion"], ref["kind"]))
                        self.assertIsNotNone(resource, "unexpected describedObject %s" % ref)
                        self.assertIn(resource, served_resources(rule) | {"namespaces"})
                    if m["type"] == "Pods":
                        self.assertEqual(source["target"]["type"], "AverageValue")

    def test_targets_are_positive_whole_numbers(self):
        # The aggregator serves whole numbers >= 1 (min 1, ceil), so fractional targets are a smell.
        for r, h in hpas():
            for m in h["spec"]["metrics"]:
                target = m[m["type"].lower()]["target"]
                with self.subTest(kustomization=r.rel, hpa=h["metadata"]["name"], type=m["type"]):
                    value = target.get("value", target.get("averageValue"))
                    self.assertRegex(str(value), r"^[1-9][0-9]*$")
                    if m["type"] == "External":
                        self.assertEqual(len({"value", "averageValue"} & set(target)), 1)

    def test_selectors_are_label_selector_objects(self):
        for r, h in hpas():
            for m in h["spec"]["metrics"]:
                metric = m[m["type"].lower()]["metric"]
                if "selector" in metric:
                    with self.subTest(kustomization=r.rel, hpa=h["metadata"]["name"]):
                        self.assertIsInstance(metric["selector"], dict)

    def test_each_hpa_scales_a_deployment_with_the_sidecar(self):
        for r, h in hpas():
            with self.subTest(kustomization=r.rel, hpa=h["metadata"]["name"]):
                ref = h["spec"]["scaleTargetRef"]
                self.assertEqual((ref["apiVersion"], ref["kind"]), ("apps/v1", "Deployment"))
                deploy = r.get("Deployment", ref["name"], h["metadata"]["namespace"])
                self.assertIsNotNone(deploy, "scale target %s not in the render" % ref["name"])
                init = deploy["spec"]["template"]["spec"].get("initContainers", [])
                self.assertIn("dwell-sidecar", [c["name"] for c in init])
                self.assertLessEqual(h["spec"].get("minReplicas", 1), h["spec"]["maxReplicas"])

    def test_one_hpa_per_scale_target(self):
        # Two HPAs on one Deployment disable each other (AmbiguousSelector, Kubernetes >= 1.27).
        for rel, r in sorted(render.renders().items()):
            targets = [
                (h["metadata"]["namespace"], h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
                for h in r.of_kind("HorizontalPodAutoscaler")
            ]
            with self.subTest(kustomization=rel):
                self.assertEqual(len(targets), len(set(targets)), targets)


if __name__ == "__main__":
    unittest.main()
