"""Every rendered object validates against the Kubernetes OpenAPI schemas, offline, in strict mode
(unknown fields are errors), for several Kubernetes minor versions; only current API versions."""

import unittest

import kubernetes_validate

import render

# Native sidecars (restartPolicy on init containers) are on by default from 1.29; these are the
# versions a user is likely to run. kubernetes-validate ships the schemas, so this runs offline.
KUBE_VERSIONS = ("1.31", "1.34", "1.36")

# Custom resources have no schema in kubernetes-validate; test_certificates checks their fields.
CUSTOM_RESOURCES = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}

# Group versions removed from current Kubernetes (the old write-ups use them).
REMOVED = {
    "apiregistration.k8s.io/v1beta1",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "policy/v1beta1",
    "rbac.authorization.k8s.io/v1beta1",
    "extensions/v1beta1",
    "apps/v1beta1",
    "apps/v1beta2",
}


def describe(obj):
    meta = obj.get("metadata", {})
    return "%s %s/%s" % (obj.get("kind"), meta.get("namespace", "-"), meta.get("name"))


class SchemaTest(unittest.TestCase):
    def test_versions_are_shipped(self):
        shipped = {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()}
        for version in KUBE_VERSIONS:
            self.assertIn(version, shipped, "kubernetes-validate has no schemas for %s" % version)

    def test_every_object_validates_strictly(self):
        for rel, rendered in sorted(render.renders().items()):
            for obj in rendered.objects:
                key = (obj.get("apiVersion"), obj.get("kind"))
                if key in CUSTOM_RESOURCES:
                    continue
                for version in KUBE_VERSIONS:
                    with self.subTest(kustomization=rel, object=describe(obj), kube=version):
                        try:
                            used = kubernetes_validate.validate(obj, version, strict=True)
                        except kubernetes_validate.ValidationError as e:
                            path = ".".join(str(p) for p in e.path)
                            self.fail("%s: %s" % (path, e.message))
                        except kubernetes_validate.SchemaNotFoundError as e:
                            self.fail(e.message)
                        # Never validate silently against an older schema set.
                        self.assertEqual(used, version)

    def test_only_current_api_versions(self):
        for rel, rendered in sorted(render.renders().items()):
            for obj in rendered.objects:
                with self.subTest(kustomization=rel, object=describe(obj)):
                    self.assertNotIn(obj.get("apiVersion"), REMOVED)

    def test_every_component_is_rendered_somewhere(self):
        root = render.workspace()
        _, components = render.kustomization_dirs(root)
        used = render.components_used(root)
        self.assertTrue(components, "no components found")
        for comp in components:
            with self.subTest(component=comp):
                self.assertIn(comp, used, "component %s is used by no kustomization" % comp)

    def test_no_duplicate_objects(self):
        for rel, rendered in sorted(render.renders().items()):
            seen = set()
            for obj in rendered.objects:
                meta = obj.get("metadata", {})
                key = (obj.get("kind"), meta.get("namespace"), meta.get("name"))
                with self.subTest(kustomization=rel, object=key):
                    self.assertNotIn(key, seen)
                seen.add(key)


if __name__ == "__main__":
    unittest.main()
