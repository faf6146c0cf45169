"""Ingest tokens as shipped (components/aggregator-ingest-tokens, examples/ingest-tokens): the
aggregator's env names flags the binary accepts, the JWKS path lies inside the read-only mount of
the ConfigMap dwell-ingest-jwks, identity is required, and the audience is the one the sidecar's
projected token is for. The base leaves ingest tokens off (every limit at its default) and sets
no DWELL_INGEST_JWKS. The real binary, given the component's env and an empty key set, refuses
to start and names the flag (a good key set is tested in aggregator/tests/ingest_auth.rs)."""

import json
import os
import subprocess
import tempfile
import unittest

import render

AGGREGATOR = "dwell-aggregator"


def aggregator_container(r):
    deploy = r.get("Deployment", render.SERVICE, render.NAMESPACE)
    pod = deploy["spec"]["template"]["spec"]
    return pod, next(c for c in pod["containers"] if c["name"] == "aggregator")


class IngestTokensManifestTest(unittest.TestCase):
    def test_component_points_into_the_jwks_configmap(self):
        pod, c = aggregator_container(render.render(os.path.join("examples", "ingest-tokens")))
        accepted, _ = render.help_env_names(AGGREGATOR)
        for env in ("DWELL_INGEST_JWKS", "DWELL_INGEST_TOKEN_ISSUER", "DWELL_INGEST_TOKEN_AUDIENCE",
                    "DWELL_INGEST_REQUIRE_IDENTITY"):
            self.assertIn(env, accepted)
        path = render.env_value(c, "DWELL_INGEST_JWKS")
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == os.path.dirname(path))
        self.assertIs(mount.get("readOnly"), True)
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        self.assertEqual(volume["configMap"]["name"], "dwell-ingest-jwks")
        self.assertEqual(render.env_value(c, "DWELL_INGEST_REQUIRE_IDENTITY"), "true")
        self.assertEqual(render.env_value(c, "DWELL_INGEST_TOKEN_AUDIENCE"), "dwell")
        self.assertTrue(render.env_value(c, "DWELL_INGEST_TOKEN_ISSUER").startswith("https://"))

    def test_base_leaves_tokens_off(self):
        _, c = aggregator_container(render.render("base"))
        names = {e["name"] for e in c.get("env", [])}
        self.assertFalse({n for n in names if n.startswith("DWELL_INGEST_JWKS")}, names)
        _, text = render.help_env_names(AGGREGATOR)
        for env, default in (("DWELL_INGEST_TOKEN_AUDIENCE", "dwell"),
                             ("DWELL_INGEST_MAX_SOURCES_PER_NAMESPACE", "10000"),
                             ("DWELL_INGEST_MAX_SOURCES", "100000"),
                             ("DWELL_GRPC_MAX_STREAMS_PER_CONNECTION", "256")):
            self.assertEqual(render.help_default(text, env), default, env)

    def test_the_binary_takes_the_component_env_and_refuses_an_empty_key_set(self):
        pod, c = aggregator_container(render.render(os.path.join("examples", "ingest-tokens")))
        binary = os.path.join(render.BIN_DIR, AGGREGATOR)
        with tempfile.TemporaryDirectory() as d:
            jwks = os.path.join(d, "jwks.json")
            with open(jwks, "w") as f:
                json.dump({"keys": []}, f)
            env = {e["name"]: e["value"] for e in c["env"] if "value" in e
                   and e["name"].startswith("DWELL_INGEST_")}
            env.update(DWELL_INGEST_JWKS=jwks, PATH=os.environ.get("PATH", ""))
            out = subprocess.run([binary, "--metrics-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"],
                                 env=env, capture_output=True, text=True, timeout=60)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("--ingest-jwks", out.stderr)
            self.assertIn("no RS256 or ES256 signing key", out.stderr)


if __name__ == "__main__":
    unittest.main()
