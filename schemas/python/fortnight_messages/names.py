"""How a topic names its class; setup.py loads this file alone, before the package exists."""


def class_name(topic):
    """`fortnight.override.unblock` -> `OverrideUnblock`, the Rust type's name (the schema's
    title is not always: transparent wrappers take their inner type's). Fedora CI's topics
    keep their artifact type, which the Rust type leaves out:
    `ci.productmd-compose.test.queued` -> `CiProductmdComposeTestQueued`."""
    words = topic.replace("-", ".").split(".")
    if words[0] == "fortnight":
        words = words[1:]
    return "".join(word.capitalize() for word in words)
