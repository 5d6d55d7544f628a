// The open-redirect corpus ../testdata/openredirects.txt is oauth2-proxy's (MIT
// licence; see ../testdata/openredirects.NOTICE).

package e2e

import (
	"bufio"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// TestOpenRedirects sends every attack of the open-redirect corpus as the
// callbackUrl of the real endpoints — sign-out, credentials sign-in and the
// sign-in page — and checks that each sends the browser to the site's own
// origin and nowhere else.
func TestOpenRedirects(t *testing.T) {
	base, _, _ := credentialsSite(t, "authgate", "", aliceUser)
	f, err := os.Open("../testdata/openredirects.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var targets []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		raw := sc.Text()
		// The file is URL-query-escaped; a line that does not decode is an attack
		// string in its own right.
		if dec, err := url.QueryUnescape(raw); err == nil && dec != raw {
			targets = append(targets, dec)
		}
		targets = append(targets, raw)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(targets) < 559 {
		t.Fatalf("read %d attacks from the corpus, want at least 559", len(targets))
	}

	home := func(loc string) bool { return loc == base || loc == base+"/" }
	b := newBrowser(t)
	token := b.csrfToken(base)
	bad := 0
	report := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, target := range targets {
		// Sign-out needs only the CSRF token.
		r := b.post(base+"/.auth/signout", url.Values{"csrfToken": {token}, "callbackUrl": {target}})
		if loc := r.Header.Get("Location"); r.StatusCode != http.StatusFound || !home(loc) {
			report("sign-out with callbackUrl %q: %d to %q, want 302 to %s/", target, r.StatusCode, loc, base)
		}
		// The sign-in page puts the checked callback URL in its forms.
		page := b.navigate(base + "/.auth/signin?callbackUrl=" + url.QueryEscape(target))
		if page.StatusCode != http.StatusOK {
			report("sign-in page with callbackUrl %q: status %d", target, page.StatusCode)
		} else if got := formFor(t, page.Body, "/.auth/callback/credentials").Values.Get("callbackUrl"); !home(got) {
			report("sign-in page with callbackUrl %q: form callbackUrl %q, want %s/", target, got, base)
		}
	}
	// A credentials sign-in redirects to its callbackUrl; one per decoded line
	// keeps bcrypt's cost in bounds.
	for _, target := range targets {
		if !strings.Contains(target, "%") {
			r := b.post(base+"/.auth/callback/credentials", url.Values{"csrfToken": {token}, "callbackUrl": {target},
				"username": {"alice"}, "password": {aliceUser.Password}})
			if loc := r.Header.Get("Location"); r.StatusCode != http.StatusFound || !home(loc) {
				report("credentials sign-in with callbackUrl %q: %d to %q, want 302 to %s/", target, r.StatusCode, loc, base)
			}
		}
	}
	if bad > 20 {
		t.Errorf("… and %d more", bad-20)
	}

	// Controls: the same endpoints keep a same-origin callbackUrl.
	r := b.post(base+"/.auth/signout", url.Values{"csrfToken": {token}, "callbackUrl": {base + "/dashboard?tab=1"}})
	wantLocation(t, r, base+"/dashboard?tab=1")
	r = b.post(base+"/.auth/signout", url.Values{"csrfToken": {token}, "callbackUrl": {"/dashboard"}})
	wantLocation(t, r, base+"/dashboard")
	r = b.post(base+"/.auth/callback/credentials", url.Values{"csrfToken": {token}, "callbackUrl": {"/dashboard"},
		"username": {"alice"}, "password": {aliceUser.Password}})
	wantLocation(t, r, base+"/dashboard")
}
