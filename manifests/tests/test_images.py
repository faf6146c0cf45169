"""Container images (they cannot be built here: no Docker engine): every Dockerfile passes hadolint,
is multi-stage, and its runtime stages are minimal (distroless or scratch) and run as non-root;
the image names and ports the manifests use match what the Dockerfile builds."""

import os
import re
import shutil
import subprocess
import unittest

import render

# Final stage (build target) -> the binary it must run and the ports the manifests expect.
TARGETS = {
    "aggregator": ("dwell-aggregator", {6443, 50051}),
    "sidecar": ("dwell-sidecar", {9127}),
}
MINIMAL_BASES = re.compile(r"^(gcr\.io/distroless/|cgr\.dev/chainguard/static|scratch$)")


def dockerfiles():
    found = []
    for dirpath, dirnames, filenames in os.walk(render.REPO):
        dirnames[:] = [d for d in dirnames if d not in ("target", ".git", "node_modules", ".venv")]
        found += [os.path.join(dirpath, f) for f in filenames if f == "Dockerfile" or f.endswith(".Dockerfile")]
    return sorted(found)


def stages(path):
    """[(name, base, [(instruction, args)])] with line continuations joined."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            out.append((m.group(2), m.group(1), []))
        elif out:
            out[-1][2].append((instr, args.strip()))
    return out


class ImageTest(unittest.TestCase):
    def test_hadolint_passes(self):
        hadolint = shutil.which("hadolint")
        self.assertIsNotNone(hadolint, "hadolint is not installed (scripts/lib/services.sh ensure_tools)")
        files = dockerfiles()
        self.assertTrue(files, "no Dockerfile in the repository")
        for path in files:
            with self.subTest(dockerfile=os.path.relpath(path, render.REPO)):
                proc = subprocess.run([hadolint, "--failure-threshold", "info", path], capture_output=True, text=True)
                self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_runtime_stages_are_minimal_and_non_root(self):
        built = {}
        for path in dockerfiles():
            all_stages = stages(path)
            self.assertGreaterEqual(len(all_stages), 2, "%s is not multi-stage" % path)
            names = {s[0] for s in all_stages if s[0]}
            for name, base, body in all_stages:
                if name not in TARGETS:
                    continue
                with self.subTest(dockerfile=os.path.relpath(path, render.REPO), target=name):
                    self.assertRegex(base, MINIMAL_BASES)
                    self.assertNotRegex(base, r":latest$|^[^:@]+$")
                    users = [a for i, a in body if i == "USER"]
                    self.assertTrue(users, "no USER")
                    self.assertNotRegex(users[-1], r"^(root|0)(:|$)")
                    self.assertFalse([i for i, _ in body if i == "RUN"], "a runtime stage runs nothing")
                    entry = [a for i, a in body if i == "ENTRYPOINT"]
                    binary, ports = TARGETS[name]
                    self.assertEqual(len(entry), 1)
                    self.assertRegex(entry[0], r'^\["[^"]*/%s"' % re.escape(binary), "exec form, the right binary")
                    copies = [a for i, a in body if i == "COPY"]
                    self.assertTrue(any("--from=" in c and binary in c for c in copies))
                    for c in copies:
                        src = re.search(r"--from=(\S+)", c)
                        if src:
                            self.assertIn(src.group(1), names)
                    exposed = {int(p.split("/")[0]) for i, a in body if i == "EXPOSE" for p in a.split()}
                    self.assertEqual(exposed, ports)
                    built[name] = True
        self.assertEqual(set(built), set(TARGETS), "build targets missing")

    def test_build_uses_the_lockfile_and_a_pinned_toolchain(self):
        for path in dockerfiles():
            with open(path) as f:
                text = f.read()
            with self.subTest(dockerfile=os.path.relpath(path, render.REPO)):
                self.assertIn("--locked", text)
                self.assertRegex(text, r"FROM rust:\$\{RUST_VERSION\}|FROM rust:\d+\.\d+")

    def test_dockerignore_keeps_the_context_small(self):
        path = os.path.join(render.REPO, ".dockerignore")
        self.assertTrue(os.path.exists(path), "no .dockerignore")
        with open(path) as f:
            lines = {line.strip() for line in f if line.strip() and not line.startswith("#")}
        self.assertLessEqual({"target", ".git"}, lines)
        # Everything cargo needs must stay in the context.
        for needed in ("Cargo.toml", "Cargo.lock", "proto", "aggregator", "sidecar", "tests"):
            self.assertNotIn(needed, lines)

    def test_manifests_use_the_built_images(self):
        images = set()
        for r in render.renders().values():
            for d in r.of_kind("Deployment"):
                pod = d["spec"]["template"]["spec"]
                for c in render.containers(pod):
                    images.add((c["name"], c["image"]))
        for name, binary in (("aggregator", "dwell-aggregator"), ("dwell-sidecar", "dwell-sidecar")):
            with self.subTest(container=name):
                tags = {img for n, img in images if n == name}
                self.assertTrue(tags, "no container %s" % name)
                for img in tags:
                    self.assertRegex(img, r"/%s:[0-9][^:]*$" % re.escape(binary), "pinned, named for the binary")


if __name__ == "__main__":
    unittest.main()
