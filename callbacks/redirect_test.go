// The open-redirect corpus ../testdata/openredirects.txt is copied unchanged from
// oauth2-proxy's test corpus (testdata/openredirects.txt in
// github.com/oauth2-proxy/oauth2-proxy), used under the MIT licence; see
// ../testdata/openredirects.NOTICE. Its allow-list below is oauth2-proxy's test
// allow-list for the same file.

package callbacks

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"unicode"
)

const testBase = "https://app.authgate.test"

// corpusAllowList is the allow-list the open-redirect corpus is written against.
var corpusAllowList = []string{
	"foo.bar",
	".bar.foo",
	"port.bar:8080",
	".sub.port.bar:8080",
	"anyport.bar:*",
	".sub.anyport.bar:*",
	"www.whitelisteddomain.tld",
	"*.wildcard.sub.port.bar:8080",
	"*.wildcard.sub.anyport.bar:*",
	"*.wildcard.bar",
	"*.wildcard.proxy.foo.bar",
}

func mustParse(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", raw, err)
	}
	return u
}

func mustCompile(t testing.TB, patterns ...string) *Origins {
	t.Helper()
	o, err := CompileOrigins(patterns)
	if err != nil {
		t.Fatalf("CompileOrigins(%q): %v", patterns, err)
	}
	return o
}

func TestSafeRedirectRejectsOpenRedirectCorpus(t *testing.T) {
	base := mustParse(t, testBase)
	allowed := mustCompile(t, corpusAllowList...)

	f, err := os.Open("../testdata/openredirects.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	lines := 0
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		lines++
		raw := scanner.Text()
		// The file is URL-query-escaped; a line that does not decode is an attack
		// string in its own right and is used as it is.
		target, err := url.QueryUnescape(raw)
		if err != nil {
			target = raw
		}
		for _, tc := range []struct{ form, target string }{{"decoded", target}, {"raw", raw}} {
			got, ok := SafeRedirect(tc.target, base, allowed)
			if ok || got != base.String() {
				t.Errorf("line %d, %s %q: SafeRedirect = %q, %v; want %q, false", lines, tc.form, tc.target, got, ok, base.String())
			}
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if lines != 559 {
		t.Errorf("tested %d lines of the corpus, want 559", lines)
	}
}

func TestSafeRedirectAccepts(t *testing.T) {
	base := mustParse(t, testBase)
	allowed := mustCompile(t, corpusAllowList...)
	for _, tc := range []struct {
		target, want string
	}{
		{"/", "https://app.authgate.test/"},
		{"/dashboard?x=1#y", "https://app.authgate.test/dashboard?x=1#y"},
		{"/a/b;c?q=a+b&r=%2Fx#frag", "https://app.authgate.test/a/b;c?q=a+b&r=%2Fx#frag"},
		{"/search?filter[name]=x|y", "https://app.authgate.test/search?filter[name]=x|y"},
		{"/caf%C3%A9", "https://app.authgate.test/caf%C3%A9"},
		{"/%" + strings.Repeat("25", 7) + "41", "https://app.authgate.test/%" + strings.Repeat("25", 7) + "41"}, // eight layers
		{"/javascript:alert(1)", "https://app.authgate.test/javascript:alert(1)"},                               // a path on our origin, not a scheme
		{"https://app.authgate.test", "https://app.authgate.test"},
		{"https://app.authgate.test/x", "https://app.authgate.test/x"},
		{"https://app.authgate.test:443/x", "https://app.authgate.test/x"},
		{"HTTPS://APP.AUTHGATE.TEST/x", "https://app.authgate.test/x"},
		{"https://app.authgate.test?x=1", "https://app.authgate.test?x=1"},
		{"https://foo.bar/x", "https://foo.bar/x"},
		{"http://foo.bar/x", "http://foo.bar/x"},
		{"http://anyport.bar:9999/", "http://anyport.bar:9999/"},
		{"https://a.wildcard.bar/", "https://a.wildcard.bar/"},
		{"https://a.b.wildcard.bar/", "https://a.b.wildcard.bar/"},
		{"https://x.sub.port.bar:8080/", "https://x.sub.port.bar:8080/"},
		{"https://bar.foo/", "https://bar.foo/"},
		{"https://a.bar.foo/", "https://a.bar.foo/"},
		{"http://port.bar:8080/", "http://port.bar:8080/"},
		{"https://foo.bar:443/", "https://foo.bar/"},
	} {
		got, ok := SafeRedirect(tc.target, base, allowed)
		if !ok || got != tc.want {
			t.Errorf("SafeRedirect(%q) = %q, %v; want %q, true", tc.target, got, ok, tc.want)
		}
	}
}

func TestSafeRedirectRejects(t *testing.T) {
	base := mustParse(t, testBase)
	allowed := mustCompile(t, "foo.bar", "https://*.example.com")
	for _, target := range []string{
		"",
		// not on an allowed origin
		"https://evil.com/",
		"http://app.authgate.test/x", // scheme downgrade is another origin
		"https://app.authgate.test:8443/x",
		"https://foo.bar:8080/",
		"https://app.authgate.test.evil.com/",
		"https://evilapp.authgate.test/",
		// scheme-relative, and the backslash spellings browsers read as slashes
		"//evil.com",
		"///evil.com",
		"/\\evil.com",
		"\\\\evil.com",
		"\\/evil.com",
		"https:\\\\evil.com",
		"https://app.authgate.test\\@evil.com",
		"https://foo.bar\\.evil.com",
		"/x\\y",
		"/café", // non-ASCII arrives percent-encoded from a browser
		// whitespace and control characters, which browsers strip or choke on
		"/\t/evil.com",
		"/\n/evil.com",
		"/\r/evil.com",
		"/\x00/evil.com",
		"/\v/evil.com",
		"/\x7f",
		" /x",
		"/x ",
		"\t/x",
		"/x\u00a0",
		"/x\u2028",
		"/x\u3000",
		"/x\u200b",
		"/x\u202e",
		"/x\x85",
		// the same, percent-encoded, at any depth
		"/%2f%2fevil.com",
		"/%2F/evil.com",
		"/%5cevil.com",
		"/%5Cevil.com",
		"/%09/evil.com",
		"/%0d%0a",
		"/%00",
		"/%7f",
		"/%20",
		"/%C2%A0",
		"/%E2%80%8B",
		"/%E2%80%AE",
		"/%C2%80",
		"/%C2%85",
		"/%252f%252fevil.com",
		"/%25252f%25252fevil.com",
		"/%255cevil.com",
		"/%" + strings.Repeat("25", 8) + "41", // nine layers: more than any URL needs
		// malformed escapes, which net/url refuses and browsers keep
		"/%zz",
		"/a%2",
		"/a#%zz",
		// a second URL smuggled into the first
		"/http://evil.com",
		"/https:/evil.com//",
		"/redirect?url=//evil.com",
		"/login?next=https://evil.com",
		"/login?next=https%3A%2F%2Fevil.com",
		"/#//evil.com",
		"https://app.authgate.test//evil.com",
		"https://foo.bar/x?next=http://evil.com",
		// userinfo, whichever side names which host
		"https://app.authgate.test@evil.com/",
		"https://evil.com@app.authgate.test/",
		"https://user:pass@app.authgate.test/",
		"https://@app.authgate.test/",
		"https://app.authgate.test%40evil.com/",
		// other schemes
		"javascript:alert(1)",
		"JaVaScRiPt:alert(1)",
		"java\tscript:alert(1)",
		"java%09script:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"vbscript:msgbox(1)",
		"ftp://app.authgate.test/",
		"file:///etc/passwd",
		"https:app.authgate.test/x",
		"https:/app.authgate.test/x",
		"https:///app.authgate.test/x",
		// not a path
		"dashboard",
		"?x=1",
		"#x",
		"./x",
		"@evil.com",
		// odd hosts, ports and IDN
		"https://app.authgate.test./x",
		"https://app..authgate.test/x",
		"https://app.authgate.test:/x",
		"https://app.authgate.test:0/x",
		"https://app.authgate.test:65536/x",
		"https://app.authgate.test:4a3/x",
		"https://app.authgate.test:-443/x",
		"https://app.authgate.test:443:443/x",
		"https://app%2eauthgate.test/x",
		"https://аpp.authgate.test/x", // Cyrillic а
		"https://foo。bar/",
		"https://foo%E3%80%82bar/",
		"https://[::1]/",
		"https://[app.authgate.test]/",
		"http://127.0.0.1/",
		"http://0x7f.0.0.1/",
		"http://2130706433/",
		"https://a_b.example.com/",
		"https://*.example.com/",
		"https://a.example.com/<script",
		"https://a.example.com/script>",
		"https://a.example.com/\"",
		"https://a.example.com/`",
	} {
		got, ok := SafeRedirect(target, base, allowed)
		if ok || got != base.String() {
			t.Errorf("SafeRedirect(%q) = %q, %v; want %q, false", target, got, ok, base.String())
		}
	}
}

func TestSafeRedirectNilAllowListAllowsOnlyBase(t *testing.T) {
	base := mustParse(t, testBase)
	if got, ok := SafeRedirect("https://foo.bar/x", base, nil); ok || got != testBase {
		t.Errorf("with a nil allow-list: SafeRedirect(https://foo.bar/x) = %q, %v; want %q, false", got, ok, testBase)
	}
	if got, ok := SafeRedirect("https://app.authgate.test/x", base, nil); !ok || got != "https://app.authgate.test/x" {
		t.Errorf("with a nil allow-list: SafeRedirect(same origin) = %q, %v; want it accepted", got, ok)
	}
}

func TestSafeRedirectBase(t *testing.T) {
	for _, tc := range []struct {
		base, target, want string
		ok                 bool
	}{
		// a relative path resolves against the base's origin, not its path
		{"https://app.authgate.test/.auth", "/x", "https://app.authgate.test/x", true},
		{"https://app.authgate.test/.auth", "//evil.com", "https://app.authgate.test/.auth", false},
		{"http://localhost:3000", "/x", "http://localhost:3000/x", true},
		{"http://localhost:3000", "http://LOCALHOST:3000/y", "http://localhost:3000/y", true},
		{"http://localhost:3000", "http://localhost/y", "http://localhost:3000", false},
		{"HTTPS://App.AuthGate.Test:443", "/x", "https://app.authgate.test/x", true},
		{"http://[::1]:8080", "http://[0:0::1]:8080/x", "http://[::1]:8080/x", true},
		{"http://[::1]:8080", "/x", "http://[::1]:8080/x", true},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x", true},
		{"http://127.0.0.1:8080", "http://2130706433:8080/x", "http://127.0.0.1:8080", false},
		// a base that is no http(s) origin allows nothing
		{"ftp://app.authgate.test", "/x", "ftp://app.authgate.test", false},
		{"https://user@app.authgate.test", "/x", "https://user@app.authgate.test", false},
	} {
		got, ok := SafeRedirect(tc.target, mustParse(t, tc.base), nil)
		if ok != tc.ok || got != tc.want {
			t.Errorf("SafeRedirect(%q, base %q) = %q, %v; want %q, %v", tc.target, tc.base, got, ok, tc.want, tc.ok)
		}
	}
}

// TestSafeRedirectWildcardOrigin covers the allow_origin https://*.example.com example:
// a wildcard matches subdomains, never the apex and never a look-alike.
func TestSafeRedirectWildcardOrigin(t *testing.T) {
	base := mustParse(t, testBase)
	allowed := mustCompile(t, "https://*.example.com")
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"https://a.example.com/x", true},
		{"https://A.Example.COM/x", true},
		{"https://a.b.example.com/x", true},
		{"https://example.com", false}, // the apex: use .example.com to include it
		{"https://example.com/x", false},
		{"https://example.com.evil.net", false},
		{"https://evilexample.com", false},
		{"https://a.evilexample.com", false},
		{"https://a.example.com@evil.net", false},
		{"https://evil.net@a.example.com", false},
		{"https://a.example.com.", false},
		{"http://a.example.com/x", false},       // the pattern names https
		{"https://a.example.com:8443/x", false}, // and its default port
	} {
		got, ok := SafeRedirect(tc.target, base, allowed)
		if ok != tc.ok {
			t.Errorf("SafeRedirect(%q) = %q, %v; want ok %v", tc.target, got, ok, tc.ok)
		}
		if !ok && got != testBase {
			t.Errorf("SafeRedirect(%q) = %q on rejection; want the base URL", tc.target, got)
		}
	}
}

func TestOriginsAllowed(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		allow   []string
		deny    []string
	}{
		{
			pattern: "foo.bar",
			allow:   []string{"http://foo.bar/", "https://foo.bar", "HTTPS://FOO.BAR", "https://foo.bar:443", "http://foo.bar:80"},
			deny:    []string{"https://a.foo.bar", "https://foo.bar:8443", "http://foo.bar:443", "https://foo.bar.evil", "https://xfoo.bar", "ftp://foo.bar", "https://u@foo.bar", "https://foo.bar."},
		},
		{
			pattern: ".bar.foo",
			allow:   []string{"https://bar.foo", "https://a.bar.foo", "http://a.b.bar.foo"},
			deny:    []string{"https://xbar.foo", "https://bar.foo.evil", "https://bar.foo:8080"},
		},
		{
			pattern: "*.wildcard.bar",
			allow:   []string{"https://a.wildcard.bar", "http://a.b.wildcard.bar"},
			deny:    []string{"https://wildcard.bar", "https://awildcard.bar", "https://a.wildcard.bar:8080"},
		},
		{
			pattern: "port.bar:8080",
			allow:   []string{"http://port.bar:8080", "https://port.bar:8080"},
			deny:    []string{"https://port.bar", "http://port.bar:8081", "https://a.port.bar:8080"},
		},
		{
			pattern: "anyport.bar:*",
			allow:   []string{"http://anyport.bar", "https://anyport.bar:1", "http://anyport.bar:65535"},
			deny:    []string{"https://a.anyport.bar:8080", "https://anyport.bar.evil:8080"},
		},
		{
			pattern: "*.wildcard.sub.anyport.bar:*",
			allow:   []string{"https://a.wildcard.sub.anyport.bar:4242"},
			deny:    []string{"https://wildcard.sub.anyport.bar:4242"},
		},
		{
			pattern: "http://localhost:*",
			allow:   []string{"http://localhost", "http://localhost:3000", "http://LocalHost:8080"},
			deny:    []string{"https://localhost:3000", "http://a.localhost:3000", "http://localhost.evil:3000"},
		},
		{
			pattern: "https://a.example.com:8443",
			allow:   []string{"https://a.example.com:8443/x?y"},
			deny:    []string{"https://a.example.com", "http://a.example.com:8443", "https://b.a.example.com:8443"},
		},
		{
			pattern: "HTTPS://*.Example.COM",
			allow:   []string{"https://a.example.com"},
			deny:    []string{"https://example.com", "http://a.example.com"},
		},
		{
			pattern: "http://[::1]:8080",
			allow:   []string{"http://[::1]:8080", "http://[0::1]:8080"},
			deny:    []string{"http://[::2]:8080", "http://localhost:8080", "http://127.0.0.1:8080"},
		},
		{
			pattern: "http://127.0.0.1:*",
			allow:   []string{"http://127.0.0.1:3000"},
			deny:    []string{"http://127.0.0.2:3000", "http://2130706433:3000", "http://0177.0.0.1:3000", "http://127.1:3000"},
		},
		{
			pattern: "xn--bcher-kva.example",
			allow:   []string{"https://xn--bcher-kva.example"},
			deny:    []string{"https://bücher.example", "https://b%C3%BCcher.example"},
		},
	} {
		o := mustCompile(t, tc.pattern)
		for _, raw := range tc.allow {
			if !o.Allowed(mustParse(t, raw)) {
				t.Errorf("pattern %q: Allowed(%q) = false, want true", tc.pattern, raw)
			}
		}
		for _, raw := range tc.deny {
			if o.Allowed(mustParse(t, raw)) {
				t.Errorf("pattern %q: Allowed(%q) = true, want false", tc.pattern, raw)
			}
		}
	}
}

func TestOriginsAllowedNil(t *testing.T) {
	var o *Origins
	if o.Allowed(mustParse(t, "https://foo.bar")) {
		t.Error("nil Origins allowed a URL")
	}
	if mustCompile(t, "foo.bar").Allowed(nil) {
		t.Error("Allowed(nil) = true")
	}
	if mustCompile(t).Allowed(mustParse(t, "https://foo.bar")) {
		t.Error("an empty allow-list allowed a URL")
	}
	if mustCompile(t, "foo.bar").Allowed(mustParse(t, "/x")) {
		t.Error("Allowed accepted a relative URL")
	}
}

func TestCompileOriginsErrors(t *testing.T) {
	for _, tc := range []struct {
		pattern, wantErr string
	}{
		{"", "empty pattern"},
		{"https://", "malformed host or port"},
		{"https://a.example.com/", "no path"},
		{"https://a.example.com/x", "no path"},
		{"a.example.com/x", "no path"},
		{"https://a.example.com?x=1", "no path, query"},
		{"https://a.example.com#x", "fragment"},
		{"https://user@a.example.com", "userinfo"},
		{"user:pass@a.example.com", "userinfo"},
		{"ftp://a.example.com", `scheme "ftp"`},
		{"javascript://a.example.com", `scheme "javascript"`},
		{"a.example.com:", "malformed host or port"},
		{"a.example.com:0", `port "0"`},
		{"a.example.com:65536", `port "65536"`},
		{"a.example.com:80a", `port "80a"`},
		{"a.example.com:-1", `port "-1"`},
		{"a.example.com:**", `port "**"`},
		{"a.example.com:80:80", `port "80:80"`},
		{" a.example.com", "whitespace"},
		{"a.example.com\t", "whitespace"},
		{"bücher.example", "non-ASCII"},
		{"*", "not a DNS name"},
		{"*.", "not a DNS name"},
		{".", "not a DNS name"},
		{"*example.com", "not a DNS name"},
		{"a*.example.com", "not a DNS name"},
		{"a.*.example.com", "not a DNS name"},
		{"*.*.example.com", "not a DNS name"},
		{"a..example.com", "not a DNS name"},
		{"a.example.com.", "not a DNS name"},
		{"a_b.example.com", "not a DNS name"},
		{"a%2eexample.com", "not a DNS name"},
		{"a\\b.example.com", "not a DNS name"},
		{"0x7f.0.0.1", "not a DNS name"},
		{"2130706433", "not a DNS name"},
		{"010.0.0.1", "not a DNS name"},
		{"[::1", "malformed host or port"},
		{"[::1]x", "malformed host or port"},
		{"[fe80::1%25eth0]", "not a DNS name"},
		{"[127.0.0.1]", "not a DNS name"},
		{"::1", "malformed host or port"},
		{"*.127.0.0.1", "wildcard needs a DNS name"},
		{".[::1]", `port ":1]"`},
	} {
		o, err := CompileOrigins([]string{"foo.bar", tc.pattern})
		if err == nil {
			t.Errorf("CompileOrigins(%q) = %v, nil; want an error", tc.pattern, o)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.pattern)) {
			t.Errorf("CompileOrigins(%q) error = %q; want it to name the pattern and say %q", tc.pattern, err, tc.wantErr)
		}
	}
}

// FuzzSafeRedirect checks SafeRedirect's promise for any input: the base URL and
// false, or an absolute URL on the base origin or an allowed one, with nothing in
// it that a browser would read differently from net/url.
func FuzzSafeRedirect(f *testing.F) {
	for _, seed := range []string{
		"/", "/dashboard?x=1#y", "https://app.authgate.test/x", "https://foo.bar/x",
		"http://anyport.bar:9999/", "https://a.wildcard.bar/", "//evil.com", "/\\evil.com",
		"/%2f%2fevil.com", "https://app.authgate.test@evil.com", "javascript:alert(1)",
		"https://[::1]/", "/%E2%80%8B", "https://foo.bar:443/?a=%zz#b",
	} {
		f.Add(seed)
	}
	if raw, err := os.ReadFile("../testdata/openredirects.txt"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			f.Add(line)
		}
	}

	base, err := url.Parse(testBase)
	if err != nil {
		f.Fatal(err)
	}
	allowed, err := CompileOrigins(corpusAllowList)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got, ok := SafeRedirect(target, base, allowed)
		if !ok {
			if got != base.String() {
				t.Fatalf("SafeRedirect(%q) = %q, false; want the base URL", target, got)
			}
			return
		}
		for _, r := range got {
			if r == '\\' || r == ' ' || r > unicode.MaxASCII || unicode.IsControl(r) {
				t.Fatalf("SafeRedirect(%q) = %q contains %q", target, got, r)
			}
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("SafeRedirect(%q) = %q, which does not parse: %v", target, got, err)
		}
		if u.User != nil || u.Opaque != "" || u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("SafeRedirect(%q) = %q, not a plain absolute http(s) URL", target, got)
		}
		// What follows the authority must start a path, query or fragment, so a
		// browser ends the host exactly where net/url does.
		afterHost := strings.TrimPrefix(got, u.Scheme+"://"+u.Host)
		if len(afterHost) == len(got) || afterHost != "" && !strings.ContainsAny(afterHost[:1], "/?#") {
			t.Fatalf("SafeRedirect(%q) = %q: host %q does not end cleanly", target, got, u.Host)
		}
		if u.Host != base.Host && !allowed.Allowed(u) {
			t.Fatalf("SafeRedirect(%q) = %q, on origin %s://%s, which is neither the base's nor allowed", target, got, u.Scheme, u.Host)
		}
		if u.Host == base.Host && u.Scheme != base.Scheme {
			t.Fatalf("SafeRedirect(%q) = %q changed the base's scheme", target, got)
		}
		if strings.HasPrefix(target, "/") && got != testBase+target {
			t.Fatalf("SafeRedirect(%q) = %q; a relative path must resolve to base + path", target, got)
		}
	})
}

func BenchmarkSafeRedirectRelative(b *testing.B) {
	base := mustParse(b, testBase)
	allowed := mustCompile(b, corpusAllowList...)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := SafeRedirect("/dashboard/projects?tab=settings#members", base, allowed); !ok {
			b.Fatal("rejected")
		}
	}
}
