# -*- coding: utf-8 -*-
"""The HTTP fetcher (_urls.UrlFetcher) against real servers in threads: redirects, limits, TLS, hostile servers."""
import pytest

from ansible_collections.oci.discovery.plugins.module_utils._fetch import FetchError
from ansible_collections.oci.discovery.plugins.module_utils._urls import UrlFetcher

from discovery_site import IDX, Reply, drip, huge, redirect

MiB = 1024 * 1024


def fetcher(tls, **kwargs):
    kwargs.setdefault("ca_path", tls.ca_path)
    return UrlFetcher(**kwargs)


def test_plain_get_returns_final_url_status_type_body(site, tls):
    site.doc("example.test", "/x", {"a": 1})
    r = fetcher(tls).fetch("https://example.test/x", IDX, MiB)
    assert r.status == 200
    assert r.url == "https://example.test/x"
    assert r.content_type == IDX + "; charset=utf-8"
    assert b'"a": 1' in r.body
    assert site.requests("https")[-1][3] == IDX  # the Accept header


def test_status_is_returned_not_raised(site, tls):
    site.add_host("example.test")
    r = fetcher(tls).fetch("https://example.test/missing", IDX, MiB)
    assert r.status == 404 and r.body == b""


def test_redirects_followed_hop_by_hop_and_final_url_reported(site, tls):
    site.route("example.test", "/a", redirect("/b", 301))
    site.route("example.test", "/b", redirect("https://b.example.test/c", 307))
    site.doc("b.example.test", "/c", {})
    r = fetcher(tls).fetch("https://example.test/a", IDX, MiB)
    assert r.url == "https://b.example.test/c" and r.status == 200


def test_redirect_loop_is_named(site, tls):
    site.route("example.test", "/a", redirect("/b"))
    site.route("example.test", "/b", redirect("/a"))
    with pytest.raises(FetchError, match=r"redirect loop: https://example.test/a -> "
                                         r"https://example.test/b -> https://example.test/a"):
        fetcher(tls).fetch("https://example.test/a", IDX, MiB)


def test_redirect_limit(site, tls):
    for i in range(10):
        site.route("example.test", "/r%d" % i, redirect("/r%d" % (i + 1)))
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetcher(tls, max_redirects=3).fetch("https://example.test/r0", IDX, MiB)
    # three hops are fine: r7 -> r8 -> r9 -> r10 (404)
    assert fetcher(tls, max_redirects=3).fetch("https://example.test/r7", IDX, MiB).status == 404


def test_https_to_http_redirect_refused_unless_http_allowed(site, tls):
    site.route("example.test", "/a", redirect("http://example.test/b"), scheme="https")
    site.doc("example.test", "/b", {}, scheme="http")
    with pytest.raises(FetchError, match=r"refused a redirect to http://example.test/b: http is not an allowed"):
        fetcher(tls).fetch("https://example.test/a", IDX, MiB)
    r = fetcher(tls, protocols=("https", "http")).fetch("https://example.test/a", IDX, MiB)
    assert r.url == "http://example.test/b" and r.status == 200


def test_redirect_to_other_scheme_refused(site, tls):
    site.route("example.test", "/a", redirect("file:///etc/passwd"))
    with pytest.raises(FetchError, match="refused a redirect to file:///etc/passwd"):
        fetcher(tls).fetch("https://example.test/a", IDX, MiB)


def test_http_url_refused_when_only_https(site, tls):
    with pytest.raises(FetchError, match="http is not an allowed protocol"):
        fetcher(tls).fetch("http://example.test/a", IDX, MiB)


def test_size_limit_from_content_length_fails_before_reading(site, tls):
    site.route("example.test", "/big", huge(1024 * MiB))
    with pytest.raises(FetchError, match=r"Content-Length 1073741824 is larger than the limit of 4194304"):
        fetcher(tls).fetch("https://example.test/big", IDX, 4 * MiB)


@pytest.mark.timeout(60)
def test_size_limit_enforced_while_reading_without_length(site, tls):
    # 1 GB without Content-Length: the client must stop after limit+1 bytes.
    site.route("example.test", "/big", huge(1024 * MiB, declare_length=False))
    with pytest.raises(FetchError, match=r"body larger than the limit of 4194304 bytes"):
        fetcher(tls).fetch("https://example.test/big", IDX, 4 * MiB)


def test_body_at_the_limit_is_fine(site, tls):
    site.route("example.test", "/exact", Reply(200, {"Content-Type": IDX}, b"x" * 1000))
    assert len(fetcher(tls).fetch("https://example.test/exact", IDX, 1000).body) == 1000
    with pytest.raises(FetchError, match="larger than the limit of 999"):
        fetcher(tls).fetch("https://example.test/exact", IDX, 999)


@pytest.mark.timeout(30)
def test_slow_drip_body_fails_at_the_overall_deadline(site, tls):
    # 1000 bytes at one byte a second: socket timeouts never fire; the deadline must.
    site.route("example.test", "/drip", drip(length=1000, interval=0.5))
    with pytest.raises(FetchError, match=r"no complete response within the 2 s timeout"):
        fetcher(tls, timeout=2).fetch("https://example.test/drip", IDX, MiB)


@pytest.mark.timeout(30)
def test_slow_drip_headers_fail_at_the_overall_deadline(site, tls):
    def dripping_headers(handler):
        import time
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for dummy in range(1000):
            handler.wfile.write(b"X")
            handler.wfile.flush()
            time.sleep(0.5)
        return Reply(200)
    site.route("example.test", "/h", dripping_headers)
    with pytest.raises(FetchError, match=r"no complete response within the 2 s timeout"):
        fetcher(tls, timeout=2).fetch("https://example.test/h", IDX, MiB)


def test_wrong_host_certificate(make_site, tls, monkeypatch):
    s = make_site(tls.wrong_pem)
    s.proxied(monkeypatch)
    s.doc("example.test", "/x", {})
    with pytest.raises(FetchError, match=r"TLS certificate verification failed: .*[Hh]ostname mismatch"):
        fetcher(tls).fetch("https://example.test/x", IDX, MiB)
    # validate_certs=False is the explicit way out
    assert fetcher(tls, validate_certs=False).fetch("https://example.test/x", IDX, MiB).status == 200


def test_untrusted_ca(make_site, tls, monkeypatch):
    s = make_site(tls.untrusted_pem)
    s.proxied(monkeypatch)
    s.doc("example.test", "/x", {})
    with pytest.raises(FetchError, match=r"TLS certificate verification failed: .*unable to get local issuer"):
        fetcher(tls).fetch("https://example.test/x", IDX, MiB)


def test_connection_refused(tls, monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(FetchError, match="connection refused"):
        fetcher(tls).fetch("https://127.0.0.1:%d/x" % port, IDX, MiB)


def test_use_proxy_false_ignores_the_proxy(site, tls):
    # Without the proxy the test names do not resolve: proof that the proxy was not used.
    site.doc("example.test", "/x", {})
    with pytest.raises(FetchError) as info:
        fetcher(tls, use_proxy=False, timeout=5).fetch("https://example.test/x", IDX, MiB)
    assert "unknown host" in info.value.reason and info.value.kind == "absent"
    assert not site.log


def test_extra_headers_sent(site, tls):
    seen = {}

    def capture(handler):
        seen.update(handler.headers)
        return Reply(200, {"Content-Type": IDX}, b"{}")
    site.route("example.test", "/h", capture)
    fetcher(tls).fetch("https://example.test/h", IDX, MiB, lambda url: {"X-Test": "1", "Accept": "ignored"})
    assert seen["X-Test"] == "1" and seen["Accept"] == IDX


def test_headers_chosen_per_hop_and_dropped_on_a_cross_origin_redirect(site, tls):
    seen = []

    def capture(handler):
        seen.append((handler.headers.get("Host"), handler.path, handler.headers.get("Authorization")))
        if handler.path == "/start":
            return redirect("https://other-site.test/away")
        if handler.path == "/away":
            return redirect("https://example.test/back")
        return Reply(200, {"Content-Type": IDX}, b"{}")
    for host, path in (("example.test", "/start"), ("other-site.test", "/away"), ("example.test", "/back")):
        site.route(host, path, capture)
    asked = []

    def headers_for(url):
        asked.append(url)
        return {"Authorization": "Bearer t"} if url.startswith("https://example.test/") else {}
    r = fetcher(tls).fetch("https://example.test/start", IDX, MiB, headers_for)
    assert r.url == "https://example.test/back"
    assert asked == ["https://example.test/start", "https://other-site.test/away", "https://example.test/back"]
    assert [auth for dummy, dummy2, auth in seen] == ["Bearer t", None, "Bearer t"]
