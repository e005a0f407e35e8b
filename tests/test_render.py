"""Message templates: plain {name} placeholders only, inert for anything else."""

import pytest

from hasthook import render
from hasthook.event import EVENTS, classify

INJECTIONS = {
    "{resource.__class__}": "attribute access is not allowed",
    "{resource.__init__.__globals__}": "attribute access is not allowed",
    "{0}": "positional fields are not allowed",
    "{}": "positional fields are not allowed",
    "{resource!r}": "conversions (!r, !s, !a) are not allowed",
    "{resource:>99999}": "format specs are not allowed",
    "{resource[0]}": "index lookups are not allowed",
}


def event(word="split-brain", resource="shared1", **state):
    words = [word, resource, "secondary", "primary"] if word == "role" else [word, resource]
    ev = classify(words, "host1", now=1_700_000_000.0)
    for k, v in state.items():
        setattr(ev, k, v)
    return ev


@pytest.mark.parametrize("template,why", INJECTIONS.items())
def test_injection_is_a_check_error(template, why):
    [problem] = render.problems(f"alert: {template}")
    assert problem.startswith(f"{template}: {why}")


@pytest.mark.parametrize("template", INJECTIONS)
def test_injection_is_inert_at_run_time(template):
    values = render.fields(event())
    assert render.render(f"x {template} y", values) == f"x {template} y"


def test_values_are_text_not_templates():
    """A resource named like a placeholder (hast.conf is not trusted) stays as written."""
    ev = event(resource="{host}{resource.__class__}")
    title, body = render.message(ev, title="{resource} on {host}", body="{summary}")
    assert title == "{host}{resource.__class__} on host1"
    assert body == "[{host}{resource.__class__}] SPLIT-BRAIN detected on host1"


def test_control_characters_in_values_are_replaced():
    ev = event(resource="evil\x1b[2Jname")
    assert render.fields(ev)["resource"] == "evil?[2Jname"


def test_every_field_renders_and_unknown_state_says_so():
    ev = event(role="secondary", dirty=None)
    values = render.fields(ev, rule="sb", suppressed=4)
    text = render.render(" ".join(f"{{{f}}}" for f in render.FIELDS), values)
    assert "{" not in text
    assert (values["role"], values["dirty"], values["status"]) == ("secondary", "unknown",
                                                                    "unknown")
    assert (values["rule"], values["count"], values["suppressed"]) == ("sb", "5", "4")


def test_dirty_is_humanised_as_hastctl_does():
    values = render.fields(event(dirty=2097152))
    assert (values["dirty"], values["dirty_h"], values["dirty_human"]) == (
        "2097152", "2.0MB", "2.0MB")


def test_doubled_braces_are_literal_and_lone_braces_are_check_errors():
    assert render.render("{{resource}} {resource}", render.fields(event())) == (
        "{resource} shared1")
    assert render.problems("{{ok}}") == []
    assert render.problems("a { b")[0].startswith("lone '{'")
    assert render.problems("a } b")[0].startswith("lone '}'")


def test_unknown_placeholder_suggests_the_close_one():
    [problem] = render.problems("{resorce} down")
    assert problem == "unknown placeholder {resorce} (did you mean {resource}?)"


@pytest.mark.parametrize("word", EVENTS)
def test_built_in_messages_are_complete_for_every_event(word):
    ev = event(word, role="primary", status="degraded", dirty=10 * 2**30,
               remoteaddr="192.168.0.102")
    title, body = render.message(ev, rule="r")
    assert "shared1" in title and "host1" in title
    assert "shared1" in body
    assert "{" not in title + body and "unknown" not in title + body
    assert render.problems(title) == [] and render.problems(body) == []


@pytest.mark.parametrize("word", ["connect", "disconnect", "split-brain"])
def test_built_in_messages_name_the_host_and_the_peer_address_apart(word):
    """Not "... the peer on host1 192.168.0.102.": which is the host, which the peer?"""
    ev = event(word, role="primary", status="degraded", dirty=0, remoteaddr="192.168.0.102")
    _, body = render.message(ev)
    assert "Peer address: 192.168.0.102." in body
    assert "host1 192.168.0.102" not in body
    assert ("on host1." in body) if word != "split-brain" else ("On host1: role primary" in body)


def test_split_brain_message_says_what_to_do():
    _, body = render.message(event(role="secondary"))
    assert "hastctl role init shared1; hastctl create shared1" in body


def test_suppressed_count_is_said_in_the_next_message():
    _, body = render.message(event(), suppressed=59)
    assert body.endswith("(59 similar events suppressed since the last message.)")
    _, body = render.message(event(), suppressed=0)
    assert "suppressed" not in body


def test_config_templates_override_built_ins_by_kind_then_default():
    overrides = {"default": {"title": "HAST {event}"},
                 "split-brain": {"body": "SB {resource}"}}
    assert render.message(event("split-brain"), overrides=overrides) == (
        "HAST split-brain", "SB shared1")
    title, body = render.message(event("connect"), overrides=overrides)
    assert title == "HAST connect" and body.startswith("[shared1] connected to the peer")
    assert render.message(event(), title="T {rule}", rule="r", overrides=overrides)[0] == "T r"
