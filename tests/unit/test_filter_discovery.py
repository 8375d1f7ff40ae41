# -*- coding: utf-8 -*-
"""The oci.discovery.image_name and oci.discovery.cas_url filters."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.oci.discovery.plugins.filter.discovery import FilterModule, cas_url, image_name

E3 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_filters_registered():
    assert set(FilterModule().filters()) == {"image_name", "cas_url"}


def test_image_name_parts():
    assert image_name("a.b.example.com/team/app#1.0") == {
        "name": "a.b.example.com/team/app#1.0", "family": "a.b.example.com/team/app",
        "host": "a.b.example.com", "path": "team/app", "fragment": "1.0"}
    assert image_name("example.com/app")["fragment"] == ""


@pytest.mark.parametrize("bad", ["example.com:80/app", "example.com", "/app", 42])
def test_image_name_rejects_non_names(bad):
    with pytest.raises(AnsibleFilterError):
        image_name(bad)


def test_cas_url_spec_example():
    assert cas_url(E3, "https://a.example.com/cas/{algorithm}/{encoded:2}/{encoded}") == \
        "https://a.example.com/cas/sha256/e3/" + E3.split(":")[1]


def test_cas_url_descriptor_engine_name_and_base():
    engine = {"protocol": "oci-cas-template-v1", "uri": "../{+path}/blobs/{algorithm}/{encoded}"}
    url = cas_url({"digest": E3, "size": 0}, engine, name="example.com/team/app#1.0",
                  base="https://example.com/oci-image/x/index.json")
    assert url == "https://example.com/oci-image/team/app/blobs/sha256/" + E3.split(":")[1]


@pytest.mark.parametrize("value, template", [
    ("sha256:1234", "/{digest}"),
    (E3, {"protocol": "other", "uri": "/x"}),
    (E3, "/{digest"),
])
def test_cas_url_errors(value, template):
    with pytest.raises(AnsibleFilterError, match="cas_url"):
        cas_url(value, template)
