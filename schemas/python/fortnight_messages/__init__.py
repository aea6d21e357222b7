"""fedora-messaging classes for Fortnight's topics.

The classes are made from the JSON Schemas shipped in this package (Fortnight's `schemas/`,
generated from its Rust types): one class per schema file, named after its Rust type and
registered by setup.py under the topic, which is what Fortnight writes in the
`fedora_messaging_schema` header. What a class says about its message (summary, people,
severity) is looked up by topic below; a topic without an entry still gets a class that
validates and describes its message from the fields every Fortnight body shares.
"""

import json
from importlib import resources

from fedora_messaging import message

from .names import class_name

#: The body Fortnight publishes for the old two-week tooling, which has no stream field.
LEGACY = "releng.atomic.twoweek.complete"

# Mirrors `Message::severity` of the Rust bodies; the interop tests compare each class's
# default with the header Fortnight sends, so a change on one side fails until both agree.
SEVERITIES = {
    "fortnight.image.build.failed": message.ERROR,
    "fortnight.image.tests.failed": message.WARNING,
    "fortnight.override.block": message.WARNING,
    "fortnight.override.unblock": message.WARNING,
    "fortnight.override.release": message.WARNING,
    "fortnight.override.hold": message.WARNING,
    "fortnight.override.unhold": message.WARNING,
    "fortnight.override.switch": message.WARNING,
    "fortnight.release.skipped": message.WARNING,
    "ci.productmd-compose.test.error": message.ERROR,
    "fortnight.stream.stale": message.WARNING,
    "fortnight.override.end-of-life": message.WARNING,
    "fortnight.stream.end-of-life": message.WARNING,
}

#: Fedora CI's test messages Fortnight sends for each test run (its topics, not Fortnight's).
CI_PREFIX = "ci."


def _candidate(body):
    """`<stream> <version>`, or as much of it as the body has."""
    return " ".join(str(body[key]) for key in ("stream", "version") if body.get(key))


def _arch(body):
    return f" on {body['arch']}" if body.get("arch") else ""


def _reason(body):
    return f": {body['reason']}" if body.get("reason") else ""


def _tree_composed(body):
    tree = body["tree"]
    version = f" (version {body['version']})" if body.get("version") else ""
    return f"tree {tree['ref']} at {tree['commit'][:12]}{version} composed for {body['arch']}"


def _tests_failed(body):
    failed = ", ".join(body.get("failed") or []) or "no gating test named"
    return f"{_candidate(body)} failed its tests{_arch(body)}: {failed}"


def _karma_submitted(body):
    return f"{body['user']} voted {body['karma']:+d} on {_candidate(body)}"


def _threshold(body):
    return (
        f"{_candidate(body)} reached {body['status']} karma ({body['karma']:+d} from "
        f"{len(body.get('votes') or [])} votes)"
    )


def _timer(body):
    by = f" by {body['operator']}" if body.get("operator") else ""
    return f"two-week timer fired{by} for {body['stream']} (period {body['period']})"


def _override(verb):
    def summary(body):
        return f"{body['operator']} {verb} {_candidate(body)}{_reason(body)}"

    return summary


def _published(body):
    label = f" ({body['prerelease']})" if body.get("prerelease") else ""
    forced = " (forced)" if body.get("forced") else ""
    previous = f", replacing {body['previous']}" if body.get("previous") else ""
    arches = ", ".join(sorted(body.get("arches") or {}))
    arches = f" for {arches}" if arches else ""
    return f"{_candidate(body)}{label} released{forced}{arches}{previous}{_changes(body)}"


def _changes(body):
    """The package counts of a release's notes, summed over its arches."""
    changes = body.get("changes") or {}
    counted = [c["packages"] for c in (changes.get("arches") or {}).values() if c.get("packages")]
    if not counted:
        return ""
    total = {k: sum(c.get(k, 0) for c in counted) for k in ("upgraded", "added", "removed")}
    return (
        f" ({total['upgraded']} packages upgraded, {total['added']} added, "
        f"{total['removed']} removed)"
    )


def _switch(body):
    at_once = ", its first release at once" if body.get("release_now") else ""
    return f"{body['operator']} switched two-week releases to {body['stream']}{at_once}{_reason(body)}"


def _switched(body):
    by = f" by {body['operator']}" if body.get("operator") else " at its date"
    return f"two-week releases moved from {body['from']} to {body['to']}{by}{_reason(body)}"


def _skipped(body):
    candidates = body.get("candidates") or []
    return (
        f"no {body['stream']} release for period {body['period']}: "
        f"{len(candidates)} candidates not eligible, policy {body['policy']}"
    )


def _legacy_artifacts(body):
    return [
        artifact
        for artifacts in body.values()
        if isinstance(artifacts, dict)
        for artifact in artifacts.values()
        if isinstance(artifact, dict)
    ]


def _twoweek_complete(body):
    artifacts = _legacy_artifacts(body)
    composes = sorted({a.get("compose_id", "") for a in artifacts} - {""})
    images = f"{len(artifacts)} image{'' if len(artifacts) == 1 else 's'}"
    return f"two-week Atomic Host release {', '.join(composes)} complete: {images}"


def _ci_run(verb, body, after=""):
    """`43.2 <verb> fortnight.f43.functional on x86_64<after>`."""
    test = body.get("test") or {}
    name = ".".join(str(test[key]) for key in ("namespace", "type", "category") if test.get(key))
    arches = ", ".join(
        str(system["architecture"])
        for system in body.get("system") or []
        if isinstance(system, dict) and system.get("architecture")
    )
    on = f" on {arches}" if arches else ""
    return f"{(body.get('artifact') or {}).get('id')} {verb} {name}{on}{after}"


def _ci_complete(body):
    test = body.get("test") or {}
    note = f": {test['note']}" if test.get("note") else ""
    return _ci_run(test.get("result", "finished"), body, note)


def _ci_error(body):
    reason = (body.get("error") or {}).get("reason", "")
    return _ci_run("could not be tested by", body, f": {reason}")


SUMMARIES = {
    "fortnight.tree.composed": _tree_composed,
    "fortnight.image.built": lambda b: f"{_candidate(b)} images built{_arch(b)}",
    "fortnight.image.build.failed": (
        lambda b: f"{_candidate(b)} image build failed{_arch(b)}{_reason(b)}"
    ),
    "fortnight.image.tests.passed": lambda b: f"{_candidate(b)} passed its tests{_arch(b)}",
    "fortnight.image.tests.failed": _tests_failed,
    "fortnight.candidate.testing.requested": (
        lambda b: f"{_candidate(b)} is ready for testing on {', '.join(sorted(b['arches']))}"
    ),
    "fortnight.karma.submitted": _karma_submitted,
    "fortnight.karma.threshold.reached": _threshold,
    "fortnight.twoweek.timer.fired": _timer,
    "fortnight.override.block": _override("blocked"),
    "fortnight.override.unblock": _override("unblocked"),
    "fortnight.override.release": _override("forced the release of"),
    "fortnight.override.hold": _override("held releases of"),
    "fortnight.override.unhold": _override("resumed releases of"),
    "fortnight.override.switch": _switch,
    "fortnight.release.published": _published,
    "fortnight.release.skipped": _skipped,
    "fortnight.stream.stale": lambda b: f"{b['stream']} is stale: {b['reason']}",
    "fortnight.stream.switched": _switched,
    "fortnight.override.end-of-life": _override("ended the life of"),
    "fortnight.stream.end-of-life": lambda b: b["message"],
    "fortnight.sign.requested": (
        lambda b: f"{_candidate(b)} asks for signatures of {len(b['artifacts'])} files "
        f"and {len(b['commits'])} commits"
    ),
    "fortnight.sign.finished": (
        lambda b: f"{_candidate(b)} signing {'succeeded' if b['status'] == 'SUCCESS' else 'failed'}"
        + (f": {b['failure-message']}" if b.get("failure-message") else "")
    ),
    LEGACY: _twoweek_complete,
    "ci.productmd-compose.test.queued": lambda b: _ci_run("queued for", b),
    "ci.productmd-compose.test.running": lambda b: _ci_run("running", b),
    "ci.productmd-compose.test.complete": _ci_complete,
    "ci.productmd-compose.test.error": _ci_error,
}


class FortnightMessage(message.Message):
    """What every Fortnight message says about itself; the subclasses add their schema."""

    #: The topic without a deployment's prefix, as in `schemas/<topic_name>.json`.
    topic_name = ""

    @property
    def app_name(self):
        return "fortnight"

    @property
    def summary(self):
        describe = SUMMARIES.get(self.topic_name)
        if describe is not None:
            return describe(self.body)
        about = " ".join(filter(None, [_candidate(self.body), _arch(self.body).strip()]))
        return f"{self.topic_name} {about}".strip()

    def __str__(self):
        details = [
            f"{key.replace('_', ' ').capitalize()}: {value}"
            for key, value in self.body.items()
            if isinstance(value, (str, int, float)) and not isinstance(value, bool)
        ]
        failed = self.body.get("failed")
        if failed:
            details.append(f"Failed gating tests: {', '.join(failed)}")
        if self.topic_name == LEGACY:
            details.extend(
                f"Image: {artifact.get('image_url')}" for artifact in _legacy_artifacts(self.body)
            )
        text = f"Fortnight: {self.summary}."
        return "\n\n".join([text, "\n".join(details)]) if details else text

    @property
    def agent_name(self):
        """Who acted: the operator of an override or tick, the voter of a vote."""
        for key in ("operator", "user"):
            if isinstance(self.body.get(key), str):
                return self.body[key]
        return None

    @property
    def usernames(self):
        names = {self.body.get("operator"), self.body.get("user")}
        names.update(vote.get("user") for vote in self.body.get("votes") or [])
        return sorted(name for name in names if isinstance(name, str))

    @property
    def url(self):
        """The body's own URL (Fortnight's bodies carry none; the page's address is a
        deployment's setting), a release's notes (`changes.url`), a CI run's, else the first
        image of a legacy release."""
        if isinstance(self.body.get("url"), str):
            return self.body["url"]
        changes = self.body.get("changes")
        if isinstance(changes, dict) and isinstance(changes.get("url"), str):
            return changes["url"]
        if self.topic_name.startswith(CI_PREFIX):
            return (self.body.get("run") or {}).get("url")
        if self.topic_name == LEGACY:
            for artifact in _legacy_artifacts(self.body):
                return artifact.get("image_url")
        return None


def _load_classes():
    classes = {}
    directory = resources.files(__name__) / "schemas"
    for entry in sorted(directory.iterdir(), key=lambda entry: entry.name):
        if not entry.name.endswith(".json"):
            continue
        schema = json.loads(entry.read_text(encoding="utf-8"))
        topic = entry.name[: -len(".json")]
        classes[class_name(topic)] = type(
            class_name(topic),
            (FortnightMessage,),
            {
                "__module__": __name__,
                "__doc__": schema.get("description", topic),
                "topic_name": topic,
                "topic": topic,
                "body_schema": schema,
                "severity": SEVERITIES.get(topic, message.INFO),
            },
        )
    return classes


CLASSES = _load_classes()
globals().update(CLASSES)
__all__ = ["FortnightMessage", "CLASSES", *CLASSES]
