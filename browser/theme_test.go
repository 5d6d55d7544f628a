package browser

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
)

// logoSVG is the test brand's logo.
const logoSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40" viewBox="0 0 120 40">` +
	`<rect width="120" height="40" rx="8" fill="#7c3aed"/><text x="60" y="27" font-family="sans-serif" font-size="20" fill="#fffbeb" text-anchor="middle">ACME</text></svg>`

// startImages serves the logo at /logo.svg (and any other path: an image from
// an origin the pages must not load from).
func startImages(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		fmt.Fprint(w, logoSVG)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// prefer makes the browser prefer a colour scheme (light or dark), as a user's
// system setting does.
func (p *page) prefer(scheme string) {
	p.t.Helper()
	_, err := chromedp.Run(p.ctx, func(ctx context.Context, t *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
	})
	if err != nil {
		p.fatalf("preferring the %s colour scheme: %v", scheme, err)
	}
}

// style is the computed CSS property of the first element matching sel.
func (p *page) style(sel, property string) string {
	p.t.Helper()
	p.mustHave(sel)
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`getComputedStyle(document.querySelector(%s)).getPropertyValue(%s)`, jsString(sel), jsString(property))))
	if err != nil {
		p.fatalf("reading %s of %s: %v", property, sel, err)
	}
	return v
}

// wantStyle fails the test unless sel's computed property is want.
func (p *page) wantStyle(sel, property, want string) {
	p.t.Helper()
	if got := p.style(sel, property); got != want {
		p.fatalf("%s of %s = %q, want %q", property, sel, got, want)
	}
}

// imageLoads reports whether an image from src loads in the page (false when
// the page's Content-Security-Policy blocks it).
func (p *page) imageLoads(src string) bool {
	p.t.Helper()
	ok, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](fmt.Sprintf(`new Promise(resolve => {
		const img = new Image();
		img.onload = () => resolve(true);
		img.onerror = () => resolve(false);
		img.src = %s;
	})`, jsString(src)), chromedp.EvalAwaitPromise))
	if err != nil {
		p.fatalf("loading the image %s: %v", src, err)
	}
	return ok
}

// TestBrowserTheme renders the themed pages as Chromium does: the sign-in page
// in the light and the dark colour scheme (color_scheme auto follows the
// browser), with the brand's colours on its buttons and its logo loaded from
// the logo's origin while an image from any other origin is blocked; the error
// page; and the "check your email" page, which shows the address and leads back
// to use another one. Screenshots of each go to testoutput/.
func TestBrowserTheme(t *testing.T) {
	users := writeUsersFile(t, testUser{username: "alice", password: "correct horse", name: "Alice Example", email: "alice@example.com"})
	upstream := startUpstream(t)
	logo := startImages(t)
	elsewhere := startImages(t)
	port := testcaddy.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	testcaddy.Start(t, fmt.Sprintf(`{
	admin off
	auto_https off
	authgate {
		secret %s
		url %s
		provider credentials {
			name "Acme staff"
			users_file %q
		}
		provider email {
			mailer log
			from "Acme <auth@example.com>"
		}
		callbacks {
			sign_in {
				allow domain example.com
			}
		}
		theme {
			title "Acme Corp"
			logo %s/logo.svg
			brand_color "#7c3aed"
			button_text_color "#fffbeb"
			color_scheme auto
		}
	}
}

%s {
	authgate
	reverse_proxy %s
}
`, secret, origin, users, logo.URL, origin, strings.TrimPrefix(upstream.URL, "http://")))

	p := startBrowser(t)
	const brand, buttonText = "rgb(124, 58, 237)", "rgb(255, 251, 235)"

	for _, c := range []struct{ scheme, background string }{
		{"light", "rgb(246, 248, 250)"},
		{"dark", "rgb(13, 17, 23)"},
	} {
		p.prefer(c.scheme)
		p.navigate(origin + "/app")
		p.wantPath(origin, "/.auth/signin")
		p.wantText("h1", "Sign in")
		p.wantText("#brand", "Acme Corp")
		p.wantStyle("body", "background-color", c.background)
		p.wantStyle("button#submit-credentials", "background-color", brand)
		p.wantStyle("button#submit-credentials", "color", buttonText)
		p.wantStyle("button#submit-email", "background-color", brand)
		if ok, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`(() => { const i = document.querySelector("#logo"); return i.complete && i.naturalWidth > 0; })()`)); err != nil || !ok {
			p.fatalf("the logo did not load (%v)", err)
		}
		title, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.title`))
		if err != nil || title != "Sign in · Acme Corp" {
			p.fatalf("title %q (%v), want %q", title, err, "Sign in · Acme Corp")
		}
		p.screenshot("theme-signin-" + c.scheme + ".png")
	}
	p.prefer("light")

	// The CSP allows the logo's origin and nothing more.
	if !p.imageLoads(logo.URL + "/other.svg") {
		p.fatalf("an image from the logo's origin was blocked")
	}
	if p.imageLoads(elsewhere.URL + "/tracker.svg") {
		p.fatalf("an image from another origin loaded: the CSP allows more than the logo's origin")
	}

	// The error page.
	if resp := p.navigate(origin + "/.auth/error?error=AccessDenied"); resp.Status != http.StatusForbidden {
		p.fatalf("error page: status %d, want 403", resp.Status)
	}
	p.wantText("h1", "Sign-in problem")
	p.wantText("p[role=alert]", "You do not have permission to sign in.")
	p.wantText(".code", "Error code: AccessDenied")
	p.wantStyle("a#link", "color", brand)
	p.screenshot("theme-error.png")

	// "Check your email": the address, and a way to use another.
	p.navigate(origin + "/.auth/signin?callbackUrl=" + origin + "/app")
	p.typeInto("#email-email", "Dave@Example.com")
	p.clickAndWait("#submit-email")
	p.wantPath(origin, "/.auth/verify-request")
	p.wantText("h1", "Check your email")
	p.wantText("#address", "dave@example.com")
	p.wantText("a#link", "Use another address")
	p.screenshot("theme-verify-request.png")
	p.clickAndWait("a#link")
	u := p.wantPath(origin, "/.auth/signin")
	if got := u.Query().Get("callbackUrl"); got != origin+"/app" {
		p.fatalf("use another address: callbackUrl %q, want %s/app", got, origin)
	}

	// The sign-out page has a Cancel link back to where the user was.
	p.navigate(origin + "/.auth/signout?callbackUrl=" + origin + "/app")
	p.wantText("a#cancel", "Cancel")
	p.screenshot("theme-signout.png")
	p.clickAndWait("a#cancel")
	p.wantPath(origin, "/.auth/signin") // /app, signed out: sent to sign in
}
