"""Metrics API authorization in the shipped manifests: every installable kustomization runs the
aggregator with --authorization-policy pointing into a mounted ConfigMap whose policy allows the
HPA controller's identity and system:masters (and nobody else by name); the RBAC the delegated
mode needs (system:auth-delegator, for SubjectAccessReviews) is bound; the policy file is accepted
by the real binary (the live test, test_live.py, reads values through it)."""

import os
import unittest

import yaml

import render

HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


class AuthzTest(unittest.TestCase):
    def test_the_policy_is_mounted_and_allows_the_hpa_and_masters(self):
        for r in render.installable():
            with self.subTest(kustomization=r.rel):
                deploy = r.get("Deployment", render.SERVICE, render.NAMESPACE)
                pod = deploy["spec"]["template"]["spec"]
                container = pod["containers"][0]
                path = render.env_value(container, "DWELL_AUTHORIZATION_POLICY")
                self.assertTrue(path, "no DWELL_AUTHORIZATION_POLICY")
                mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
                volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
                cm = r.get("ConfigMap", volume["configMap"]["name"], render.NAMESPACE)
                self.assertIsNotNone(cm, volume)
                policy = yaml.safe_load(cm["data"][os.path.basename(path)])
                users = {u for rule in policy["allow"] for u in rule.get("users", [])}
                groups = {g for rule in policy["allow"] for g in rule.get("groups", [])}
                self.assertEqual(users, {HPA_USER})
                self.assertEqual(groups, {"system:masters"})
                for rule in policy["allow"]:
                    self.assertNotIn("namespaces", rule, "the HPA reads in every namespace")

    def test_delegation_rbac_is_bound(self):
        for r in render.installable():
            with self.subTest(kustomization=r.rel):
                refs = {b["roleRef"]["name"] for b in r.of_kind("ClusterRoleBinding")}
                self.assertIn("system:auth-delegator", refs)


if __name__ == "__main__":
    unittest.main()
