package handlers

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/providers"
)

//go:embed templates/*.html
var templateFS embed.FS

// templateFiles are the files a `templates` directory may replace; the page
// templates each define "content", which layout.html renders.
var templateFiles = []string{"layout.html", "signin.html", "signout.html", "message.html"}

// pageNames are the pages, each rendered by layout.html with <name>.html.
var pageNames = []string{"signin", "signout", "message"}

// builtinPages are parsed once; each page template defines "content" inside layout.html.
var builtinPages = map[string]*template.Template{}

func init() {
	for _, name := range pageNames {
		builtinPages[name] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
}

// ThemeConfig brands the built-in pages, as Auth.js's theme option does.
type ThemeConfig struct {
	// Title is the name shown above every page's heading and in its <title>.
	Title string `json:"title,omitempty"`

	// Logo is the URL of an image shown above the title: an absolute http(s)
	// URL, or a path on the site (/logo.svg). The pages' Content-Security-Policy
	// allows images from the logo's origin and nothing more.
	Logo string `json:"logo,omitempty"`

	// BrandColor colours the buttons and links: a hex colour (#0a7cff) or a CSS
	// colour name.
	BrandColor string `json:"brand_color,omitempty"`

	// ButtonTextColor is the colour of the buttons' text, in the same forms.
	ButtonTextColor string `json:"button_text_color,omitempty"`

	// ColorScheme is auto (default: light or dark as the browser prefers),
	// light or dark.
	ColorScheme string `json:"color_scheme,omitempty"`
}

// PagesConfig sends users to the operator's own pages instead of the built-in
// ones, as Auth.js's pages option does. Each is a path on the site (/login) or
// an absolute http(s) URL; those left empty stay built in.
type PagesConfig struct {
	// SignIn gets callbackUrl, and error=<code> after a refused attempt.
	SignIn string `json:"sign_in,omitempty"`
	// SignOut gets callbackUrl.
	SignOut string `json:"sign_out,omitempty"`
	// Error gets error=<code>, an Auth.js error code.
	Error string `json:"error,omitempty"`
	// VerifyRequest is shown after an email link was sent; it gets provider,
	// type, email and callbackUrl.
	VerifyRequest string `json:"verify_request,omitempty"`
	// NewUser is where a user's first sign-in ends, with callbackUrl.
	NewUser string `json:"new_user,omitempty"`
}

// ParseColor checks a theme colour: #rgb, #rgba, #rrggbb, #rrggbbaa or a CSS
// colour name (letters only).
func ParseColor(s string) (template.CSS, error) {
	ok := len(s) > 0 && len(s) <= 32
	if hex, isHex := strings.CutPrefix(s, "#"); isHex {
		ok = slices.Contains([]int{3, 4, 6, 8}, len(hex)) && strings.Trim(strings.ToLower(hex), "0123456789abcdef") == ""
	} else {
		ok = ok && strings.Trim(strings.ToLower(s), "abcdefghijklmnopqrstuvwxyz") == ""
	}
	if !ok {
		return "", fmt.Errorf("%q: want a hex color such as #0a7cff or a CSS color name", s)
	}
	// Checked above: nothing in it can leave the CSS value it is written into.
	return template.CSS(s), nil
}

// ParseColorScheme checks a theme's color_scheme: auto (or empty), light or dark.
func ParseColorScheme(s string) (string, error) {
	switch s {
	case "", "auto":
		return "auto", nil
	case "light", "dark":
		return s, nil
	}
	return "", fmt.Errorf("color_scheme %q: want auto, light or dark", s)
}

// ParsePageURL checks the URL of an operator's page (pages) or of the logo: a
// path on the site or an absolute http(s) URL, without a fragment.
func ParsePageURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
	case u.Fragment != "" || u.User != nil:
		err = errors.New("has a fragment or credentials")
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/") && !strings.HasPrefix(s, "//") && !strings.Contains(s, `\`):
		return u, nil
	case (u.Scheme == "https" || u.Scheme == "http") && u.Host != "":
		return u, nil
	default:
		err = errors.New("is neither a path nor an absolute URL")
	}
	return nil, fmt.Errorf("%q %v: want a path such as /login or an absolute URL such as https://example.com/login", s, err)
}

// pages renders the realm's HTML pages and knows where the operator's own
// pages are.
type pages struct {
	templates map[string]*template.Template
	theme     themeView
	own       PagesConfig // the operator's pages; "" where the built-in one is used
	csp       string
	logger    *zap.Logger
}

// themeView is the theme as templates see it (.Theme), checked.
type themeView struct {
	Title           string
	Logo            string
	BrandColor      template.CSS
	ButtonTextColor template.CSS
	ColorScheme     string // auto, light or dark
}

// basePolicy is the pages' Content-Security-Policy: styles inline, forms to
// this site or the identity providers, nothing framed, nothing else loaded.
const basePolicy = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'"

// compilePages checks the realm's theme, pages and templates, and parses and
// tries out the templates, so that a broken one fails `caddy validate` naming
// its file.
func compilePages(cfg *Realm, repl *caddy.Replacer, logger *zap.Logger) (*pages, error) {
	p := &pages{templates: builtinPages, csp: basePolicy, logger: logger}
	if err := p.compileTheme(cfg.Theme); err != nil {
		return nil, err
	}
	if err := p.compileOwnPages(cfg.Pages); err != nil {
		return nil, err
	}
	if cfg.Templates != "" {
		dir := repl.ReplaceAll(cfg.Templates, "")
		t, err := parseTemplates(dir)
		if err != nil {
			return nil, err
		}
		p.templates = t
	}
	for _, name := range pageNames {
		if err := p.templates[name].ExecuteTemplate(io.Discard, "layout.html", samplePage(p.theme)); err != nil {
			return nil, fmt.Errorf("templates %s: %v", cfg.Templates, err)
		}
	}
	return p, nil
}

func (p *pages) compileTheme(cfg *ThemeConfig) error {
	p.theme.ColorScheme = "auto"
	if cfg == nil {
		return nil
	}
	var err error
	p.theme.Title = cfg.Title
	if p.theme.ColorScheme, err = ParseColorScheme(cfg.ColorScheme); err != nil {
		return fmt.Errorf("theme %v", err)
	}
	for _, c := range []struct {
		name string
		in   string
		out  *template.CSS
	}{{"brand_color", cfg.BrandColor, &p.theme.BrandColor}, {"button_text_color", cfg.ButtonTextColor, &p.theme.ButtonTextColor}} {
		if c.in == "" {
			continue
		}
		if *c.out, err = ParseColor(c.in); err != nil {
			return fmt.Errorf("theme %s: %v", c.name, err)
		}
	}
	if cfg.Logo != "" {
		u, err := ParsePageURL(cfg.Logo)
		if err != nil {
			return fmt.Errorf("theme logo %v", err)
		}
		p.theme.Logo = cfg.Logo
		p.csp += "; img-src " + logoSource(u)
	}
	return nil
}

// logoSource is the CSP source that allows the logo and nothing more: its
// origin, or 'self' for a path on the site.
func logoSource(u *url.URL) string {
	if u.Host == "" {
		return "'self'"
	}
	return u.Scheme + "://" + u.Host
}

func (p *pages) compileOwnPages(cfg *PagesConfig) error {
	if cfg == nil {
		return nil
	}
	for _, pg := range []struct{ name, url string }{
		{"sign_in", cfg.SignIn}, {"sign_out", cfg.SignOut}, {"error", cfg.Error},
		{"verify_request", cfg.VerifyRequest}, {"new_user", cfg.NewUser},
	} {
		if pg.url == "" {
			continue
		}
		if _, err := ParsePageURL(pg.url); err != nil {
			return fmt.Errorf("pages %s %v", pg.name, err)
		}
	}
	p.own = *cfg
	return nil
}

// parseTemplates parses the pages from dir's files, where it has them, and the
// built-in ones otherwise.
func parseTemplates(dir string) (map[string]*template.Template, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("templates: %v", err)
	}
	src := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || filepath.Ext(name) != ".html" {
			continue
		}
		if !slices.Contains(templateFiles, name) {
			return nil, fmt.Errorf("templates: %s: unknown template; a templates directory may hold %s", filepath.Join(dir, name), strings.Join(templateFiles, ", "))
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("templates: %v", err)
		}
		src[name] = string(b)
	}
	out := make(map[string]*template.Template, len(pageNames))
	for _, page := range pageNames {
		var t *template.Template
		for _, file := range []string{"layout.html", page + ".html"} {
			text, own := src[file]
			where := filepath.Join(dir, file)
			if !own {
				b, err := templateFS.ReadFile("templates/" + file)
				if err != nil {
					return nil, err
				}
				text, where = string(b), "built-in "+file
			}
			if t == nil {
				t = template.New(file)
			} else {
				t = t.New(file)
			}
			if _, err := t.Parse(text); err != nil {
				return nil, fmt.Errorf("templates: %s: %v", where, err)
			}
		}
		out[page] = t.Lookup("layout.html")
	}
	return out, nil
}

// samplePage is data that takes a template through most of its branches: the
// trial run at provision finds a field or function that does not exist.
func samplePage(theme themeView) pageData {
	v := []providerView{{ID: "sample", Name: "Sample"}}
	return pageData{
		Title: "Sample", Message: "Sample", Code: "Default", Link: "/", LinkText: "Sample", Address: "user@example.com",
		CSRFToken: "sample", CallbackURL: "/", BasePath: "/.auth", Error: "Sample", OAuth: v, Email: v, Credentials: v,
		Theme: theme,
	}
}

// pageData is what every page template receives; the README lists it.
type pageData struct {
	Title    string
	Message  string
	Code     string
	Link     string
	LinkText string
	// Address is the email address a sign-in link was sent to (verify-request).
	Address string

	CSRFToken   string
	CallbackURL string
	BasePath    string
	Error       string
	OAuth       []providerView
	Email       []providerView
	Credentials []providerView

	// Theme is the realm's theme; render sets it.
	Theme themeView
}

type providerView struct{ ID, Name string }

// render answers with a page.
func (p *pages) render(w http.ResponseWriter, status int, page string, d pageData) {
	d.Theme = p.theme
	var buf bytes.Buffer
	if err := p.templates[page].ExecuteTemplate(&buf, "layout.html", d); err != nil {
		p.logger.Error("rendering page", zap.String("page", page), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", p.csp)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// message answers with the page that shows a title and a message.
func (p *pages) message(w http.ResponseWriter, status int, d pageData) {
	p.render(w, status, "message", d)
}

// redirectOwn sends the browser to the operator's page target with params
// added to its query, and reports whether there is such a page.
func redirectOwn(w http.ResponseWriter, r *http.Request, target string, params url.Values) bool {
	if target == "" {
		return false
	}
	http.Redirect(w, r, withQuery(target, params), http.StatusFound)
	return true
}

// withQuery adds params to target's query.
func withQuery(target string, params url.Values) string {
	for k, v := range params {
		if len(v) == 0 || v[0] == "" {
			delete(params, k)
		}
	}
	if len(params) == 0 {
		return target
	}
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	return target + sep + params.Encode()
}

// afterSignIn is where a sign-in ends: the new_user page for a user's first
// sign-in (with the callback URL), else the callback URL.
func (p *pages) afterSignIn(callbackURL string, isNew bool) string {
	if isNew && p.own.NewUser != "" {
		return withQuery(p.own.NewUser, url.Values{"callbackUrl": {callbackURL}})
	}
	return callbackURL
}

// verifyRequestURL is the "check your email" page after a link to addr was
// sent through provider.
func (rl *realm) verifyRequestURL(provider, addr, callbackURL string) string {
	return withQuery(rl.basePath+"/verify-request", url.Values{
		"provider": {provider}, "type": {providers.TypeEmail}, "email": {addr}, "callbackUrl": {callbackURL},
	})
}

// unavailable answers a request whose session could not be read because the
// store is down: 503 with a page for browsers, JSON for others.
func unavailable(w http.ResponseWriter, r *http.Request, p *pages, logger *zap.Logger, err error) error {
	logger.Error("the session store is unavailable", zap.Error(err))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "5")
	if isNavigation(r) {
		p.message(w, http.StatusServiceUnavailable, pageData{
			Title:   "Temporarily unavailable",
			Message: "Your session cannot be checked right now. Try again in a few seconds.",
		})
		return nil
	}
	writeError(w, http.StatusServiceUnavailable, errSessionUnavailable)
	return nil
}

// signinPage: GET /signin, a button per OAuth provider and a form per
// credentials provider; or a redirect to the operator's sign-in page.
func (rl *realm) signinPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	callbackURL := rl.callbackURL(r, q.Get("callbackUrl"))
	code := q.Get("error")
	if code != "" {
		code, _ = lookupError(code)
	}
	if redirectOwn(w, r, rl.pages.own.SignIn, url.Values{"callbackUrl": {callbackURL}, "error": {code}}) {
		return
	}
	d := pageData{
		Title:       "Sign in",
		CSRFToken:   rl.csrf.token(w, r),
		CallbackURL: callbackURL,
		BasePath:    rl.basePath,
	}
	if code != "" {
		d.Error = errorText(code)
	}
	for _, p := range rl.providers.list {
		v := providerView{ID: p.ID(), Name: p.Name()}
		switch p.Type() {
		case providers.TypeCredentials:
			d.Credentials = append(d.Credentials, v)
		case providers.TypeEmail:
			d.Email = append(d.Email, v)
		default:
			d.OAuth = append(d.OAuth, v)
		}
	}
	rl.pages.render(w, http.StatusOK, "signin", d)
}

// signoutPage: GET /signout, a confirmation form with a way back; or a
// redirect to the operator's sign-out page.
func (rl *realm) signoutPage(w http.ResponseWriter, r *http.Request) {
	callbackURL := rl.callbackURL(r, r.URL.Query().Get("callbackUrl"))
	if redirectOwn(w, r, rl.pages.own.SignOut, url.Values{"callbackUrl": {callbackURL}}) {
		return
	}
	rl.pages.render(w, http.StatusOK, "signout", pageData{
		Title:       "Sign out",
		CSRFToken:   rl.csrf.token(w, r),
		CallbackURL: callbackURL,
		BasePath:    rl.basePath,
		Link:        callbackURL, LinkText: "Cancel",
	})
}

// errorPage: GET /error?error=<code>; or a redirect to the operator's error page.
func (rl *realm) errorPage(w http.ResponseWriter, r *http.Request) {
	code, e := lookupError(r.URL.Query().Get("error"))
	if redirectOwn(w, r, rl.pages.own.Error, url.Values{"error": {code}}) {
		return
	}
	rl.pages.message(w, e.status, pageData{
		Title:   "Sign-in problem",
		Code:    code,
		Message: e.text,
		Link:    rl.basePath + "/signin", LinkText: "Try signing in again",
	})
}

// verifyRequestPage: GET /verify-request, "check your email" with the address
// the link went to and a way to use another; or a redirect to the operator's page.
func (rl *realm) verifyRequestPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	callbackURL := rl.callbackURL(r, q.Get("callbackUrl"))
	// Only an address is shown: the page must not display whatever text a link
	// to it carries.
	addr, err := providers.NormalizeEmail(q.Get("email"))
	if err != nil {
		addr = ""
	}
	if redirectOwn(w, r, rl.pages.own.VerifyRequest, url.Values{
		"provider": {q.Get("provider")}, "type": {q.Get("type")}, "email": {addr}, "callbackUrl": {callbackURL},
	}) {
		return
	}
	d := pageData{
		Title:   "Check your email",
		Message: "A sign-in link has been sent to your email address. It can be used once.",
		Link:    withQuery(rl.basePath+"/signin", url.Values{"callbackUrl": {callbackURL}}), LinkText: "Use another address",
	}
	if addr != "" {
		d.Address = addr
		d.Message = "A sign-in link has been sent to this address. It can be used once."
	}
	rl.pages.message(w, http.StatusOK, d)
}
