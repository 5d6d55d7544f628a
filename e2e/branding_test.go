package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// wantOwnPage checks a 302 to the operator's page path with the query params
// given (name, value pairs; any other parameter fails the test).
func wantOwnPage(t *testing.T, r response, path string, params ...string) url.Values {
	t.Helper()
	loc := wantRedirect(t, r)
	want := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		want.Set(params[i], params[i+1])
	}
	if loc.Path != path || loc.Host != r.Request.URL.Host || loc.Query().Encode() != want.Encode() {
		t.Fatalf("%s %s: Location %q, want %s?%s", r.Request.Method, r.Request.URL, r.Header.Get("Location"), path, want.Encode())
	}
	return loc.Query()
}

// TestOwnPages: with `pages`, users are sent to the operator's pages, with the
// parameters Auth.js gives them (callbackUrl, error); a first sign-in ends on
// the new_user page; the built-in pages stay where no page is configured.
func TestOwnPages(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	c := testcaddy.Start(t, globalBlock("\t\turl "+base+"\n"+testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser))+emailProvider("", "log")+`
		callbacks {
			sign_in {
				allow domain example.com
			}
		}
		pages {
			sign_in /login
			sign_out /goodbye
			error /oops?from=authgate
			verify_request /check-email
			new_user /welcome
		}
`)+base+` {
	@app not path /login /goodbye /oops /check-email /welcome
	authgate @app
	reverse_proxy `+up.URL+`
}
`)
	b := newBrowser(t)
	target := base + "/app"

	// A guarded page: to the sign-in endpoint, which sends the browser on.
	wantSignInRedirect(t, b.navigate(target), target)
	wantOwnPage(t, b.navigate(base+"/.auth/signin?callbackUrl="+url.QueryEscape(target)), "/login", "callbackUrl", target)
	// The page is the operator's, served by the upstream, unguarded.
	wantStatus(t, b.navigate(base+"/login?callbackUrl="+url.QueryEscape(target)), http.StatusOK)
	if got := up.Last(t).URI; !strings.HasPrefix(got, "/login?") {
		t.Errorf("the upstream got %q, want the sign-in page", got)
	}

	// The operator's page posts the credentials form, as the built-in one does.
	signIn := func(b *browser, password string) response {
		return b.post(base+"/.auth/callback/credentials", url.Values{"csrfToken": {b.csrfToken(base)},
			"callbackUrl": {target}, "username": {"alice"}, "password": {password}})
	}
	loc := wantRedirect(t, signIn(b, "wrong password"))
	wantOwnPage(t, b.navigate(base+loc.RequestURI()), "/login", "callbackUrl", target, "error", "CredentialsSignin")
	wantLocation(t, signIn(b, aliceUser.Password), target) // credentials users are never new
	wantOwnPage(t, b.navigate(base+"/.auth/signout?callbackUrl="+url.QueryEscape(target)), "/goodbye", "callbackUrl", target)

	// Errors go to the error page with the code; one the table does not know
	// is "Default", never what the link said.
	wantOwnPage(t, b.navigate(base+"/.auth/error?error=AccessDenied"), "/oops", "from", "authgate", "error", "AccessDenied")
	wantOwnPage(t, b.navigate(base+"/.auth/error?error="+url.QueryEscape("<b>hi</b>")), "/oops", "from", "authgate", "error", "Default")

	// An email link: "check your email" is the operator's page, with the
	// address; a first sign-in ends on new_user, the next on the callback URL.
	eb := newBrowser(t)
	askLink := func() {
		loc := wantRedirect(t, eb.post(base+"/.auth/signin/email", url.Values{"csrfToken": {eb.csrfToken(base)},
			"callbackUrl": {target}, "email": {"Dave@Example.com"}}))
		wantOwnPage(t, eb.navigate(base+loc.RequestURI()), "/check-email",
			"callbackUrl", target, "email", "dave@example.com", "provider", "email", "type", "email")
	}
	askLink()
	wantOwnPage(t, eb.navigate(latestLogLink(t, c, "dave@example.com", callbackPrefix(base, "email"))), "/welcome", "callbackUrl", target)
	wantStatus(t, eb.navigate(target), http.StatusOK)
	eb.dropCookie(base, sessionCookie)
	askLink()
	wantLocation(t, eb.navigate(latestLogLink(t, c, "dave@example.com", callbackPrefix(base, "email"))), target)
}

// TestThemeAndTemplates: the theme brands the built-in pages, the pages'
// Content-Security-Policy allows images from the logo's origin and nothing
// more, a templates directory replaces the pages it has templates for, and
// the pages show what the issue asked: a Cancel link on sign-out, the address
// and "use another address" on verify-request.
func TestThemeAndTemplates(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	logo := "http://127.0.0.1:1/brand/logo.svg"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "message.html"), []byte(`{{define "content"}}<p id="own">{{.Message}}</p>{{with .Address}}<p id="own-address">{{.}}</p>{{end}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser))+`
		theme {
			title "Acme Corp"
			logo `+logo+`
			brand_color "#0a7cff"
			button_text_color "#fffff0"
			color_scheme dark
		}
		templates `+dir+`
`)+siteBlock(port, "authgate", up.URL))
	b := newBrowser(t)

	page := b.navigate(base + "/.auth/signin")
	wantStatus(t, page, http.StatusOK)
	if csp := page.Header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, "; img-src http://127.0.0.1:1") || strings.Count(csp, "img-src") != 1 {
		t.Errorf("Content-Security-Policy %q, want img-src of the logo's origin alone", csp)
	}
	for _, want := range []string{`<title>Sign in · Acme Corp</title>`, `<img src="` + logo + `"`, `<p id="brand">Acme Corp</p>`,
		`--accent:#0a7cff`, `--button-fg:#fffff0`, `color-scheme: dark`} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("the sign-in page lacks %q:\n%s", want, testsite.Excerpt(page.Body))
		}
	}
	if strings.Contains(page.Body, "prefers-color-scheme") {
		t.Error("color_scheme dark still follows the browser's preference")
	}

	// message.html is the directory's; signout.html stays built in, with a
	// Cancel link back to where the user was.
	page = b.navigate(base + "/.auth/error?error=AccessDenied")
	wantStatus(t, page, http.StatusForbidden)
	if !strings.Contains(page.Body, `<p id="own">You do not have permission to sign in.</p>`) {
		t.Errorf("the error page is not the directory's message.html:\n%s", testsite.Excerpt(page.Body))
	}
	page = b.navigate(base + "/.auth/signout?callbackUrl=" + url.QueryEscape(base+"/app"))
	if !strings.Contains(page.Body, `<a href="`+base+`/app" id="cancel">Cancel</a>`) {
		t.Errorf("the sign-out page has no Cancel link back:\n%s", testsite.Excerpt(page.Body))
	}

	// verify-request shows the address it was given, normalised, and only an address.
	page = b.navigate(base + "/.auth/verify-request?provider=email&type=email&email=Dave%40Example.com&callbackUrl=" + url.QueryEscape(base+"/app"))
	if !strings.Contains(page.Body, `<p id="own-address">dave@example.com</p>`) {
		t.Errorf("verify-request does not show the address:\n%s", testsite.Excerpt(page.Body))
	}
	page = b.navigate(base + "/.auth/verify-request?email=" + url.QueryEscape("Call +1 555 0100 now"))
	if strings.Contains(page.Body, "own-address") || strings.Contains(page.Body, "555") {
		t.Errorf("verify-request shows text that is not an address:\n%s", testsite.Excerpt(page.Body))
	}
}

// The built-in verify-request page offers another address, back on the
// sign-in page with the same callback URL.
func TestVerifyRequestPage(t *testing.T) {
	base, _, _ := credentialsSite(t, "authgate", "", aliceUser)
	b := newBrowser(t)
	page := b.navigate(base + "/.auth/verify-request?provider=email&type=email&email=dave%40example.com&callbackUrl=" + url.QueryEscape(base+"/app"))
	wantStatus(t, page, http.StatusOK)
	text := pageText(t, page.Body)
	for _, want := range []string{"Check your email", "dave@example.com", "Use another address"} {
		if !strings.Contains(text, want) {
			t.Errorf("verify-request lacks %q: %s", want, text)
		}
	}
	if want := `href="/.auth/signin?callbackUrl=` + url.QueryEscape(base+"/app") + `"`; !strings.Contains(page.Body, want) {
		t.Errorf("verify-request's other-address link is not %s:\n%s", want, testsite.Excerpt(page.Body))
	}
}
