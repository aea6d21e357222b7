"""What fortnight-messages' classes say about a message; run against the installed package
(`python -m unittest discover -s schemas/python/tests`, which Fortnight's `cargo test` does)."""

import unittest

from fedora_messaging import message

import fortnight_messages

TREE = {"ref": "fedora/43/x86_64/updates/atomic-host", "commit": "ab" * 32, "repo": "/srv/r"}


def load(topic, body):
    msg = message.get_class(topic)(body=body)
    msg.validate()
    return msg


class Registry(unittest.TestCase):
    def test_classes_are_named_after_the_rust_types(self):
        fortnight = [name for name in sorted(fortnight_messages.CLASSES) if name[:2] != "Ci"]
        self.assertEqual(
            fortnight[:3], ["CandidateTestingRequested", "ImageBuildFailed", "ImageBuilt"]
        )
        self.assertIn("OverrideUnblock", fortnight_messages.CLASSES)
        self.assertIn("CiProductmdComposeTestRunning", fortnight_messages.CLASSES)
        self.assertIn("RelengAtomicTwoweekComplete", fortnight_messages.CLASSES)

    def test_every_schema_is_a_registered_class(self):
        for name, cls in fortnight_messages.CLASSES.items():
            self.assertIs(message.get_class(cls.topic_name), cls)
            self.assertEqual(message.get_name(cls), cls.topic_name)
            self.assertEqual(cls.__name__, name)

    def test_every_described_topic_has_a_schema(self):
        topics = {cls.topic_name for cls in fortnight_messages.CLASSES.values()}
        self.assertLessEqual(set(fortnight_messages.SUMMARIES), topics)
        self.assertLessEqual(set(fortnight_messages.SEVERITIES), topics)


class Summaries(unittest.TestCase):
    def test_a_tree(self):
        msg = load(
            "fortnight.tree.composed",
            {"arch": "x86_64", "tree": TREE, "version": "43.20261127.1"},
        )
        self.assertEqual(
            msg.summary,
            "tree fedora/43/x86_64/updates/atomic-host at abababababab "
            "(version 43.20261127.1) composed for x86_64",
        )
        self.assertEqual(msg.agent_name, None)
        self.assertEqual(msg.usernames, [])

    def test_a_failed_build_is_an_error_with_its_reason(self):
        msg = load(
            "fortnight.image.build.failed",
            {"stream": "f43", "arch": "aarch64", "tree": TREE, "reason": "recipe exited 1"},
        )
        self.assertEqual(msg.summary, "f43 image build failed on aarch64: recipe exited 1")
        self.assertEqual(msg.severity, message.ERROR)
        self.assertIn("Reason: recipe exited 1", str(msg))

    def test_a_vote_names_its_voter(self):
        msg = load(
            "fortnight.karma.submitted",
            {"stream": "f43", "version": "43.1", "user": "bob", "karma": -1},
        )
        self.assertEqual(msg.summary, "bob voted -1 on f43 43.1")
        self.assertEqual(msg.agent_name, "bob")
        self.assertEqual(msg.usernames, ["bob"])
        self.assertEqual(msg.app_name, "fortnight")

    def test_a_hold_names_its_operator_and_reason(self):
        msg = load(
            "fortnight.override.hold",
            {"stream": "f43", "reason": "mirror outage", "operator": "alice"},
        )
        self.assertEqual(msg.summary, "alice held releases of f43: mirror outage")
        self.assertEqual(msg.severity, message.WARNING)
        self.assertEqual(
            str(msg),
            "Fortnight: alice held releases of f43: mirror outage.\n\n"
            "Stream: f43\nReason: mirror outage\nOperator: alice",
        )

    def test_a_switch_says_where_the_two_week_releases_went(self):
        msg = load(
            "fortnight.stream.switched",
            {
                "from": "f43",
                "to": "f44",
                "at": "2027-04-20T14:00:00Z",
                "how": "operator",
                "operator": "alice",
                "reason": "Fedora 44 is out",
            },
        )
        self.assertEqual(
            msg.summary,
            "two-week releases moved from f43 to f44 by alice: Fedora 44 is out",
        )
        self.assertEqual(msg.agent_name, "alice")
        asked = load(
            "fortnight.override.switch",
            {
                "stream": "f44",
                "reason": "Fedora 44 is out",
                "operator": "alice",
                "release_now": True,
            },
        )
        self.assertEqual(
            asked.summary,
            "alice switched two-week releases to f44, its first release at once: Fedora 44 is out",
        )
        self.assertEqual(asked.severity, message.WARNING)

    def test_a_beta_release_says_so(self):
        msg = load(
            "fortnight.release.published",
            {
                "stream": "f44",
                "version": "44.1",
                "arches": {},
                "forced": False,
                "reason": "newest candidate",
                "released_at": "2027-03-24T00:01:00Z",
                "prerelease": "beta",
            },
        )
        self.assertEqual(msg.summary, "f44 44.1 (beta) released")

    def test_an_end_of_life_says_where_the_machines_go(self):
        msg = load(
            "fortnight.stream.end-of-life",
            {
                "stream": "f43",
                "successor": "f44",
                "arches": {},
                "message": "Fedora Atomic Host f43 has reached end of life; its machines move to f44",
                "at": "2027-05-18T00:00:00Z",
                "how": "operator",
                "operator": "alice",
                "reason": "EOL",
            },
        )
        self.assertEqual(
            msg.summary,
            "Fedora Atomic Host f43 has reached end of life; its machines move to f44",
        )
        self.assertEqual(msg.severity, message.WARNING)
        self.assertEqual(msg.agent_name, "alice")
        self.assertEqual(msg.__class__.__name__, "StreamEndOfLife")

    def test_a_forced_release(self):
        msg = load(
            "fortnight.release.published",
            {
                "stream": "f43",
                "version": "43.2",
                "arches": {},
                "forced": True,
                "reason": "override by alice",
                "previous": "43.1",
                "released_at": "2026-11-24T00:01:00Z",
            },
        )
        self.assertEqual(msg.summary, "f43 43.2 released (forced), replacing 43.1")

    def test_a_release_counts_its_changes_and_links_its_notes(self):
        counts = {
            "packages": {"added": 1, "removed": 0, "upgraded": 2, "downgraded": 0},
            "commits": 3,
            "files": {"added": 1, "modified": 5, "removed": 0},
        }
        url = "https://dl.example.org/fortnight/f43/releases/43.2/release.json"
        msg = load(
            "fortnight.release.published",
            {
                "stream": "f43",
                "version": "43.2",
                "arches": {},
                "forced": False,
                "reason": "newest candidate",
                "previous": "43.1",
                "released_at": "2026-11-24T00:01:00Z",
                "changes": {
                    "against": "43.1",
                    "url": url,
                    "arches": {"x86_64": counts, "aarch64": {**counts, "packages": None}},
                },
            },
        )
        self.assertEqual(
            msg.summary,
            "f43 43.2 released, replacing 43.1 (2 packages upgraded, 1 added, 0 removed)",
        )
        self.assertEqual(msg.url, url)

    def test_failed_tests_are_listed(self):
        msg = load(
            "fortnight.image.tests.failed",
            {
                "stream": "f43",
                "version": "43.2",
                "arch": "x86_64",
                "tree": TREE,
                "images": [],
                "tests": [],
                "failed": ["boot", "upgrade"],
            },
        )
        self.assertEqual(msg.summary, "f43 43.2 failed its tests on x86_64: boot, upgrade")
        self.assertIn("Failed gating tests: boot, upgrade", str(msg))

    def test_a_legacy_release_links_its_images(self):
        artifact = {
            "compose_id": "Fedora-Atomic-43-20261127.1",
            "name": "Fedora-Atomic",
            "release": "43",
            "image_name": "a.qcow2",
            "image_url": "https://example.org/a.qcow2",
            "size": 1,
        }
        msg = load("releng.atomic.twoweek.complete", {"x86_64": {"atomic_qcow2": artifact}})
        self.assertEqual(
            msg.summary,
            "two-week Atomic Host release Fedora-Atomic-43-20261127.1 complete: 1 image",
        )
        self.assertEqual(msg.url, "https://example.org/a.qcow2")
        self.assertIn("Image: https://example.org/a.qcow2", str(msg))

    def test_a_ci_run_is_described_by_its_test_artifact_and_arch(self):
        subject = {
            "contact": {"name": "Fortnight", "team": "releng", "email": "r@example.org",
                        "docs": "https://example.org/docs"},
            "run": {"url": "https://dl.example.org/f43/all/43.2/x86_64/",
                    "log": "https://dl.example.org/f43/all/43.2/x86_64/junit.xml"},
            "artifact": {"type": "productmd-compose", "id": "43.2"},
            "pipeline": {"id": "p1", "name": "fortnight f43 image tests"},
            "system": [{"os": "fedora/43/x86_64/atomic-host", "provider": "fortnight",
                        "architecture": "x86_64"}],
            "generated_at": "2026-11-27T00:00:00Z",
            "version": "0.2.1",
        }
        test = {"namespace": "fortnight", "type": "f43", "category": "functional"}
        msg = load(
            "ci.productmd-compose.test.complete",
            {**subject, "test": {**test, "result": "failed", "note": "failed gating tests: boot"}},
        )
        self.assertEqual(
            msg.summary,
            "43.2 failed fortnight.f43.functional on x86_64: failed gating tests: boot",
        )
        self.assertEqual(msg.url, "https://dl.example.org/f43/all/43.2/x86_64/")
        self.assertEqual(type(msg).__name__, "CiProductmdComposeTestComplete")
        error = load(
            "ci.productmd-compose.test.error",
            {**subject, "test": test, "error": {"reason": "the suite is unreadable"}},
        )
        self.assertEqual(error.severity, message.ERROR)
        self.assertEqual(
            error.summary,
            "43.2 could not be tested by fortnight.f43.functional on x86_64: "
            "the suite is unreadable",
        )

    def test_a_topic_without_its_own_words_is_still_described(self):
        msg = fortnight_messages.CLASSES["TreeComposed"](
            body={"stream": "f43", "version": "43.3", "arch": "s390x"}
        )
        msg.topic_name = "fortnight.later.topic"
        self.assertEqual(msg.summary, "fortnight.later.topic f43 43.3 on s390x")


if __name__ == "__main__":
    unittest.main()
