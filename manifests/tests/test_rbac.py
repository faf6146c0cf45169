"""RBAC grants exactly what the contract (§5.4) says: the aggregator's ServiceAccount is bound to
system:auth-delegator and, in kube-system, to extension-apiserver-authentication-reader; the HPA
controller may read custom and external metrics; nothing else, and nothing cluster-wide beyond it."""

import unittest

import render

RBAC = "rbac.authorization.k8s.io/v1"
METRIC_GROUPS = {"custom.metrics.k8s.io", "external.metrics.k8s.io"}
READ_VERBS = {"get", "list", "watch"}
HPA = ("ServiceAccount", "kube-system", "horizontal-pod-autoscaler")


def subjects(binding):
    return frozenset((s["kind"], s.get("namespace"), s["name"]) for s in binding.get("subjects", []))


class RBACTest(unittest.TestCase):
    def aggregator_sa(self, r):
        deploy = r.get("Deployment", render.SERVICE, render.NAMESPACE)
        name = deploy["spec"]["template"]["spec"].get("serviceAccountName")
        self.assertTrue(name, "the aggregator runs as the default ServiceAccount")
        self.assertIsNotNone(r.get("ServiceAccount", name, render.NAMESPACE))
        return ("ServiceAccount", render.NAMESPACE, name)

    def test_bindings_are_exactly_the_contract(self):
        for r in render.installable():
            with self.subTest(kustomization=r.rel):
                sa = self.aggregator_sa(r)
                own_roles = {c["metadata"]["name"] for c in r.of_kind("ClusterRole")}
                self.assertEqual(len(own_roles), 1, "one ClusterRole (HPA metrics read): %s" % own_roles)
                reader = next(iter(own_roles))
                got = set()
                for b in r.of_kind("ClusterRoleBinding") + r.of_kind("RoleBinding"):
                    self.assertEqual(b["apiVersion"], RBAC)
                    ref = b["roleRef"]
                    self.assertEqual(ref["apiGroup"], "rbac.authorization.k8s.io")
                    got.add((b["kind"], b["metadata"].get("namespace"), ref["kind"], ref["name"], subjects(b)))
                want = {
                    ("ClusterRoleBinding", None, "ClusterRole", "system:auth-delegator", frozenset({sa})),
                    ("RoleBinding", "kube-system", "Role", "extension-apiserver-authentication-reader", frozenset({sa})),
                    ("ClusterRoleBinding", None, "ClusterRole", reader, frozenset({HPA})),
                }
                self.assertEqual(got, want)
                self.assertEqual(r.of_kind("Role"), [], "the aggregator needs no Role of its own")

    def test_metrics_reader_role_is_read_only_on_metric_groups(self):
        for r in render.installable():
            for role in r.of_kind("ClusterRole"):
                name = role["metadata"]["name"]
                with self.subTest(kustomization=r.rel, clusterrole=name):
                    self.assertNotIn("aggregationRule", role)
                    rules = role.get("rules", [])
                    self.assertTrue(rules)
                    granted = set()
                    for rule in rules:
                        self.assertNotIn("nonResourceURLs", rule)
                        self.assertNotIn("resourceNames", rule, "the HPA asks for many metric names")
                        groups, verbs = set(rule.get("apiGroups", [])), set(rule.get("verbs", []))
                        self.assertLessEqual(groups, METRIC_GROUPS, "grants outside the metric groups")
                        self.assertLessEqual(verbs, READ_VERBS, "grants more than read")
                        self.assertNotIn("*", verbs)
                        for g in groups:
                            for v in verbs:
                                granted.add((g, v, tuple(rule.get("resources", []))))
                    # What the HPA is checked for (contract §4.2): get on custom metrics (any
                    # resource/subresource), list on external metrics (the path has no name).
                    self.assertIn(("custom.metrics.k8s.io", "get", ("*",)), granted)
                    self.assertIn(("external.metrics.k8s.io", "list", ("*",)), granted)

    def test_nothing_else_is_cluster_scoped(self):
        # Cluster-scoped kinds a render may hold, each accounted for by a test.
        # (MutatingWebhookConfiguration: test_inject.WebhookManifestTest.)
        allowed = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService", "MutatingWebhookConfiguration"}
        for rel, r in sorted(render.renders().items()):
            for obj in r.objects:
                if "namespace" in obj.get("metadata", {}):
                    continue
                with self.subTest(kustomization=rel, object="%s/%s" % (obj["kind"], obj["metadata"]["name"])):
                    self.assertIn(obj["kind"], allowed)

    def test_only_kube_system_object_is_the_auth_reader_binding(self):
        for rel, r in sorted(render.renders().items()):
            in_kube_system = [
                (o["kind"], o["metadata"]["name"]) for o in r.objects if o["metadata"].get("namespace") == "kube-system"
            ]
            with self.subTest(kustomization=rel):
                self.assertLessEqual(len(in_kube_system), 1, in_kube_system)
                for kind, _ in in_kube_system:
                    self.assertEqual(kind, "RoleBinding")


if __name__ == "__main__":
    unittest.main()
